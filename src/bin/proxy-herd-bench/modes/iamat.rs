//! `iamat` and `oneshot`, closed-loop IAMAT load, and `baseline`.

use std::collections::BTreeSet;

use crate::ctx::Ctx;
use crate::load::Work;
use crate::report::Report;

use super::*;

/// `iamat` and `oneshot`.
pub(crate) fn iamat(ctx: &Ctx, oneshot: bool, report: &mut Report) -> Result<(), String> {
    let mode = if oneshot { "oneshot" } else { "iamat" };
    let target = ctx.target(false)?;
    let other = ctx.other_target()?;
    if let Some(caveat) = other.as_ref().and_then(|o| o.caveat.clone()) {
        report.caveat(caveat);
    }
    let work = |addr| {
        if oneshot {
            Work::Oneshot { addr }
        } else {
            Work::Iamat { addr }
        }
    };
    let mut procs = Procs::new("baseline", false)?;
    let mut base: Option<Server> = None;
    for &c in &ctx.o.connections {
        let setting = format!("c={c}");
        let out = load::run(
            &work(target.addr),
            &ctx.plan(format!("{mode} {} {setting}", target.label), c, mode),
        );
        let expected = out.last_lines.clone();
        let mut herd = measurement(mode, &target.label, &setting, out);
        if !target.all.is_empty() {
            let missing = spawn::converge(&target.all, &expected, Duration::from_secs(10));
            herd.extra
                .insert("verified".into(), json!(missing.is_empty()));
            herd.extra.insert(
                "flooded".into(),
                json!(format!(
                    "{}/{} servers x {} clients",
                    target.all.len()
                        - missing
                            .iter()
                            .map(|m| m.split(' ').next())
                            .collect::<BTreeSet<_>>()
                            .len(),
                    target.all.len(),
                    expected.len()
                )),
            );
            if let Some(first) = missing.first() {
                herd.first_error
                    .get_or_insert(format!("not flooded: {first}"));
            }
        }
        ctx.record(report, herd.clone());
        // The other herd, under the same load right after ours.
        let theirs = match &other {
            Some(other) => {
                let out = load::run(
                    &work(other.addr),
                    &ctx.plan(format!("{mode} {} {setting}", other.label), c, mode),
                );
                let m = measurement(mode, &other.label, &setting, out);
                ctx.record(report, m.clone());
                report.comparisons.push(compare(&herd, &m, &other.label));
                Some(m)
            }
            None => None,
        };
        if ctx.o.vs_baseline {
            if base.is_none() {
                base = Some(ctx.baseline(None, &mut procs)?);
            }
            let addr = base.as_ref().expect("started").addr;
            let out = load::run(
                &work(addr),
                &ctx.plan(format!("{mode} baseline {setting}"), c, mode),
            );
            let b = measurement(mode, "baseline", &setting, out);
            ctx.record(report, b.clone());
            report.comparisons.push(compare(&herd, &b, "baseline"));
            if let Some(theirs) = &theirs {
                report.comparisons.push(compare(theirs, &b, "baseline"));
            }
        }
    }
    Ok(())
}

/// `baseline` without `--serve-for`: the iamat load on the baseline.
pub(crate) fn baseline(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let mut procs = Procs::new("baseline", false)?;
    let base = ctx.baseline(None, &mut procs)?;
    for &c in &ctx.o.connections {
        let setting = format!("c={c}");
        let out = load::run(
            &Work::Iamat { addr: base.addr },
            &ctx.plan(format!("iamat baseline {setting}"), c, "base"),
        );
        ctx.record(report, measurement("iamat", "baseline", &setting, out));
    }
    Ok(())
}
