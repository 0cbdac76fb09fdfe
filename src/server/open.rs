//! The open connections: their sockets (so that a shutdown can close
//! them), how many each client address holds, and which to close when a
//! full client port must make room for a newcomer.
//!
//! A thread per connection means a slot per connection, and a stranger
//! who holds every slot with silent or trickling connections shuts every
//! other client out for as long as he likes. Under a full port a newcomer
//! from an address that holds fewer connections than the address that
//! holds the most is let in, and the longest-idle connection of the
//! latter is closed: one address cannot keep the port from the others,
//! while 10,000 connections from one address still work as long as the
//! port is not full. "Idle" is the time since the connection's last
//! whole line, so a connection that trickles bytes without ever ending a
//! line counts as idle from the start.

use std::collections::HashMap;
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most this many evicted connections may still be on their way out
/// at once; past it a full port refuses newcomers again. An evicted
/// connection's slot is free only once its thread has ended, so this
/// bounds how far above `--max-connections` the threads can go.
const MAX_LEAVING: usize = 64;

/// One open connection.
pub(super) struct Conn {
    stream: Arc<TcpStream>,
    /// The client's address; `None` on the peer port, which never makes
    /// room this way.
    address: Option<IpAddr>,
    /// When its last whole line arrived (or it opened), in milliseconds
    /// since the table was made.
    last_line_ms: AtomicU64,
    /// Chosen to make room: closed, and not to be chosen again.
    evicted: AtomicBool,
    epoch: Instant,
}

impl Conn {
    /// Notes that a whole line has arrived.
    pub(super) fn touch(&self) {
        self.last_line_ms
            .store(ms_since(self.epoch), Ordering::Relaxed);
    }
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// A connection closed to make room, for the log line.
pub(super) struct Evicted {
    /// The address that held the most connections.
    pub(super) address: IpAddr,
    /// How many it held.
    pub(super) held: usize,
    /// How long the closed connection had been without a whole line.
    pub(super) idle: Duration,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<Conn>>,
    /// Client connections by address, not counting evicted ones.
    per_address: HashMap<IpAddr, usize>,
}

impl Table {
    fn count_out(&mut self, address: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

/// Every open connection, by number.
pub(super) struct OpenConnections {
    table: Mutex<Table>,
    next: AtomicU64,
    /// Evicted connections whose threads have not ended yet.
    leaving: AtomicUsize,
    epoch: Instant,
}

impl Default for OpenConnections {
    fn default() -> OpenConnections {
        OpenConnections {
            table: Mutex::new(Table::default()),
            next: AtomicU64::new(0),
            leaving: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }
}

impl OpenConnections {
    /// Keeps a connection until [`OpenConnections::remove`]; `address`
    /// is the client's, on the client port. Returns its number and its
    /// entry, which the connection touches on every whole line.
    pub(super) fn add(&self, stream: Arc<TcpStream>, address: Option<IpAddr>) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            stream,
            address,
            last_line_ms: AtomicU64::new(ms_since(self.epoch)),
            evicted: AtomicBool::new(false),
            epoch: self.epoch,
        });
        let mut table = self.table.lock();
        if let Some(address) = address {
            *table.per_address.entry(address).or_default() += 1;
        }
        table.conns.insert(id, Arc::clone(&conn));
        (id, conn)
    }

    /// Forgets connection `id`, which has ended.
    pub(super) fn remove(&self, id: u64) {
        let removed = {
            let mut table = self.table.lock();
            let removed = table.conns.remove(&id);
            // An evicted connection was counted out when it was chosen.
            if let Some(c) = removed
                .as_ref()
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
            {
                if let Some(address) = c.address {
                    table.count_out(address);
                }
            }
            removed
        };
        if removed.is_some_and(|c| c.evicted.load(Ordering::Relaxed)) {
            self.leaving.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Every socket still open, forgotten here.
    pub(super) fn take_all(&self) -> Vec<Arc<TcpStream>> {
        let mut table = self.table.lock();
        table.per_address.clear();
        table
            .conns
            .drain()
            .map(|(_, c)| Arc::clone(&c.stream))
            .collect()
    }

    /// Makes room for a newcomer from `newcomer` on a full client port:
    /// if the address that holds the most client connections holds at
    /// least two more than `newcomer` does, closes its longest-idle one
    /// and says which. `None` when no address holds that many more (the
    /// newcomer is then refused), or when too many evicted connections
    /// are still leaving.
    pub(super) fn make_room_for(&self, newcomer: IpAddr) -> Option<Evicted> {
        if self.leaving.load(Ordering::Relaxed) >= MAX_LEAVING {
            return None;
        }
        let (victim, evicted) = {
            let mut table = self.table.lock();
            let mine = table.per_address.get(&newcomer).copied().unwrap_or(0);
            let (&address, &held) = table.per_address.iter().max_by_key(|(_, &n)| n)?;
            // Two more, not one: after the swap the newcomer's address
            // still holds fewer, so two busy addresses do not take turns
            // closing each other's connections.
            if held < mine + 2 {
                return None;
            }
            let victim = table
                .conns
                .values()
                .filter(|c| c.address == Some(address) && !c.evicted.load(Ordering::Relaxed))
                .min_by_key(|c| c.last_line_ms.load(Ordering::Relaxed))?;
            victim.evicted.store(true, Ordering::Relaxed);
            let idle =
                ms_since(self.epoch).saturating_sub(victim.last_line_ms.load(Ordering::Relaxed));
            let victim = Arc::clone(victim);
            table.count_out(address);
            (
                victim,
                Evicted {
                    address,
                    held,
                    idle: Duration::from_millis(idle),
                },
            )
        };
        self.leaving.fetch_add(1, Ordering::Relaxed);
        // Outside the lock: a shutdown wakes the connection's thread,
        // which ends and frees the slot.
        let _ = victim.stream.shutdown(std::net::Shutdown::Both);
        Some(evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(listener: &TcpListener) -> Arc<TcpStream> {
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Arc::new(listener.accept().unwrap().0)
    }

    /// The address that holds the most gives up its longest-idle
    /// connection to an address that holds at least two fewer; never to
    /// itself, and never one already chosen.
    #[test]
    fn the_biggest_holder_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = OpenConnections::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut a_conns = Vec::new();
        for _ in 0..3 {
            a_conns.push(open.add(pair(&listener), Some(a)));
        }
        // The first connection of A has spoken since; the second is the
        // longest idle.
        std::thread::sleep(Duration::from_millis(5));
        a_conns[0].1.touch();
        a_conns[2].1.touch();
        assert!(open.make_room_for(a).is_none(), "A never evicts itself");
        let evicted = open.make_room_for(b).expect("A holds 3, B none");
        assert_eq!((evicted.address, evicted.held), (a, 3));
        assert!(a_conns[1].1.evicted.load(Ordering::Relaxed));
        assert!(!a_conns[0].1.evicted.load(Ordering::Relaxed));
        // B now holds one (once its connection registers), A two: no swap,
        // or the two would take turns.
        open.add(pair(&listener), Some(b));
        assert!(open.make_room_for(b).is_none(), "2 against 1: no swap");
        // A third address, holding none, still gets in.
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let again = open.make_room_for(c).expect("2 against 0");
        assert_eq!((again.address, again.held), (a, 2));
        // Evicted connections leave: the count goes down with them.
        open.remove(a_conns[1].0);
        assert_eq!(open.leaving.load(Ordering::Relaxed), 1);
        assert_eq!(open.table.lock().per_address[&a], 1);
        let _ = a_conns;
    }
}
