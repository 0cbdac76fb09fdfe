//! The places places-stub invents: deterministic from the query (the
//! same point and radius always give the same places), plausible enough
//! to look at (names, kinds, ratings, photos, plus codes), and each one
//! saying it is made up. `answers` puts them into Google's shapes.

use std::f64::consts::PI;

use serde_json::{Map, Value};

use super::answers::{EARTH_RADIUS_M, PLACES_PER_ANSWER};

/// One kind of made-up place: how it is named, drawn and typed.
struct Kind {
    label: &'static str,
    icon: &'static str,
    color: &'static str,
    types: &'static [&'static str],
    priced: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        label: "Cafe",
        icon: "cafe",
        color: "#FF9E67",
        types: &["cafe", "food", "point_of_interest", "establishment"],
        priced: true,
    },
    Kind {
        label: "Restaurant",
        icon: "restaurant",
        color: "#FF9E67",
        types: &["restaurant", "food", "point_of_interest", "establishment"],
        priced: true,
    },
    Kind {
        label: "Bakery",
        icon: "bakery",
        color: "#FF9E67",
        types: &[
            "bakery",
            "store",
            "food",
            "point_of_interest",
            "establishment",
        ],
        priced: true,
    },
    Kind {
        label: "Bookshop",
        icon: "shopping",
        color: "#4B96F3",
        types: &["book_store", "store", "point_of_interest", "establishment"],
        priced: false,
    },
    Kind {
        label: "Park",
        icon: "park",
        color: "#4DB546",
        types: &[
            "park",
            "tourist_attraction",
            "point_of_interest",
            "establishment",
        ],
        priced: false,
    },
    Kind {
        label: "Library",
        icon: "library",
        color: "#7B9EB0",
        types: &["library", "point_of_interest", "establishment"],
        priced: false,
    },
    Kind {
        label: "Museum",
        icon: "museum",
        color: "#13B5C7",
        types: &[
            "museum",
            "tourist_attraction",
            "point_of_interest",
            "establishment",
        ],
        priced: false,
    },
];

/// [`PLACES_PER_ANSWER`] places around the point, each between 5% and 90%
/// of the radius away. The same query always gives the same places, in
/// both APIs.
pub(super) fn made_up_places(lat: f64, lng: f64, radius: f64) -> Vec<MadeUpPlace> {
    let mut rng = SplitMix64(fnv1a(format!("{lat:.7},{lng:.7},{radius}").as_bytes()));
    (1..=PLACES_PER_ANSWER)
        .map(|number| MadeUpPlace::draw(&mut rng, number, lat, lng, radius))
        .collect()
}

/// One made-up place, before it is written in either API's words: the
/// legacy answer and the New one describe the same places, so a herd
/// asked through either API tells its clients the same thing.
pub(super) struct MadeUpPlace {
    number: usize,
    kind: &'static Kind,
    lat: f64,
    lng: f64,
    /// Half the side of the viewport square, in degrees.
    half_view: f64,
    id: String,
    closed: bool,
    /// Whether it is open now, when the place says.
    open_now: Option<bool>,
    photo: Option<MadeUpPhoto>,
    /// 1-3, for kinds that have prices.
    price_level: Option<u64>,
    /// The rating times ten: 30-50.
    rating_tenths: u64,
    user_ratings_total: u64,
    street_number: u64,
}

/// The one photo a made-up place may have.
struct MadeUpPhoto {
    contributor: u64,
    landscape: bool,
    reference: String,
}

impl MadeUpPlace {
    /// Draws a place. The order of the draws is part of the answer: a
    /// change here changes every answer the stub gives.
    fn draw(rng: &mut SplitMix64, number: usize, lat: f64, lng: f64, radius: f64) -> MadeUpPlace {
        let kind = &KINDS[rng.below(KINDS.len() as u64) as usize];
        // sqrt spreads the places evenly over the disc's area.
        let distance = radius * (0.05 + 0.85 * rng.unit().sqrt());
        let bearing = 2.0 * PI * rng.unit();
        let (place_lat, place_lng) = destination(lat, lng, distance, bearing);
        let half_view = 0.0012 + 0.0003 * rng.unit();
        let id = format!("places-stub-{:016x}", rng.next());
        let closed = number % 7 == 0;
        let open_now = (!closed && rng.below(4) != 0).then(|| rng.below(3) != 0);
        let photo = (rng.below(5) < 3).then(|| MadeUpPhoto {
            contributor: rng.below(900) + 100,
            landscape: rng.below(2) == 0,
            reference: format!("places-stub-photo-{:016x}", rng.next()),
        });
        let price_level = kind.priced.then(|| rng.below(3) + 1);
        let rating_tenths = 30 + rng.below(21);
        let user_ratings_total = rng.below(5000) + 1;
        let street_number = rng.below(9000) + 100;
        MadeUpPlace {
            number,
            kind,
            lat: place_lat,
            lng: place_lng,
            half_view,
            id,
            closed,
            open_now,
            photo,
            price_level,
            rating_tenths,
            user_ratings_total,
            street_number,
        }
    }

    fn business_status(&self) -> &'static str {
        if self.closed {
            "CLOSED_TEMPORARILY"
        } else {
            "OPERATIONAL"
        }
    }

    fn name(&self) -> String {
        format!("Made-up {} {} (places-stub)", self.kind.label, self.number)
    }

    fn icon_mask_base_uri(&self) -> String {
        format!(
            "https://places-stub.invalid/icons/{}_pinlet",
            self.kind.icon
        )
    }

    fn rating(&self) -> Value {
        number_value(format!(
            "{}.{}",
            self.rating_tenths / 10,
            self.rating_tenths % 10
        ))
    }

    fn plus_codes(&self) -> (String, String) {
        let global_code = plus_code(self.lat, self.lng);
        let compound = format!("{} Made-up Town (places-stub)", &global_code[4..]);
        (global_code, compound)
    }

    fn vicinity(&self) -> String {
        format!(
            "{} Made-up Street, Not a real place (places-stub)",
            self.street_number
        )
    }

    fn types(&self) -> Value {
        Value::Array(self.kind.types.iter().map(|&t| t.into()).collect())
    }

    /// The place in Google's legacy fields, in Google's (alphabetical)
    /// key order.
    pub(super) fn legacy(&self) -> Value {
        let (lat, lng, half) = (self.lat, self.lng, self.half_view);
        let mut place = Map::new();
        place.insert("business_status".into(), self.business_status().into());
        place.insert(
            "geometry".into(),
            object([
                ("location", lat_lng(lat, lng)),
                (
                    "viewport",
                    object([
                        ("northeast", lat_lng(lat + half, lng + half)),
                        ("southwest", lat_lng(lat - half, lng - half)),
                    ]),
                ),
            ]),
        );
        place.insert(
            "icon".into(),
            format!(
                "https://places-stub.invalid/icons/{}-71.png",
                self.kind.icon
            )
            .into(),
        );
        place.insert("icon_background_color".into(), self.kind.color.into());
        place.insert(
            "icon_mask_base_uri".into(),
            self.icon_mask_base_uri().into(),
        );
        place.insert("name".into(), self.name().into());
        if let Some(open_now) = self.open_now {
            place.insert(
                "opening_hours".into(),
                object([("open_now", open_now.into())]),
            );
        }
        if let Some(photo) = &self.photo {
            let attribution = format!(
                "<a href=\"{}\">{}</a>",
                photo.contributor_uri(),
                photo.contributor_name()
            );
            let (width, height) = photo.size();
            place.insert(
                "photos".into(),
                Value::Array(vec![object([
                    ("height", height.into()),
                    ("html_attributions", Value::Array(vec![attribution.into()])),
                    ("photo_reference", photo.reference.clone().into()),
                    ("width", width.into()),
                ])]),
            );
        }
        place.insert("place_id".into(), self.id.clone().into());
        let (global_code, compound_code) = self.plus_codes();
        place.insert(
            "plus_code".into(),
            object([
                ("compound_code", compound_code.into()),
                ("global_code", global_code.into()),
            ]),
        );
        if let Some(level) = self.price_level {
            place.insert("price_level".into(), level.into());
        }
        place.insert("rating".into(), self.rating());
        place.insert("reference".into(), self.id.clone().into());
        place.insert("scope".into(), "GOOGLE".into());
        place.insert("types".into(), self.types());
        place.insert("user_ratings_total".into(), self.user_ratings_total.into());
        place.insert("vicinity".into(), self.vicinity().into());
        Value::Object(place)
    }

    /// The place in Places API (New) fields, in the order Google's proto
    /// declares them (not alphabetical, so a client that sorts is tested).
    ///
    /// Written so that the legacy mapping of src/places/README.md#places-api-new gives back
    /// [`MadeUpPlace::legacy`] except for `icon`, which the New API does
    /// not have (the mapping builds it from the mask URI). Every fifth
    /// place has no `shortFormattedAddress`, only a `formattedAddress`,
    /// so the mapping's fallback is exercised; places lack opening hours,
    /// photos and prices where their legacy twins do.
    pub(super) fn new_api(&self) -> Value {
        let (lat, lng, half) = (self.lat, self.lng, self.half_view);
        let mut place = Map::new();
        place.insert("id".into(), self.id.clone().into());
        place.insert("types".into(), self.types());
        let with_short = self.number % 5 != 0;
        let formatted = if with_short {
            format!("{}, Made-up Country", self.vicinity())
        } else {
            self.vicinity()
        };
        place.insert("formattedAddress".into(), formatted.into());
        let (global_code, compound_code) = self.plus_codes();
        place.insert(
            "plusCode".into(),
            object([
                ("globalCode", global_code.into()),
                ("compoundCode", compound_code.into()),
            ]),
        );
        place.insert("location".into(), new_lat_lng(lat, lng));
        place.insert(
            "viewport".into(),
            object([
                ("low", new_lat_lng(lat - half, lng - half)),
                ("high", new_lat_lng(lat + half, lng + half)),
            ]),
        );
        place.insert("rating".into(), self.rating());
        place.insert("businessStatus".into(), self.business_status().into());
        if let Some(level) = self.price_level {
            let level = [
                "PRICE_LEVEL_INEXPENSIVE",
                "PRICE_LEVEL_MODERATE",
                "PRICE_LEVEL_EXPENSIVE",
            ][(level - 1) as usize];
            place.insert("priceLevel".into(), level.into());
        }
        place.insert("userRatingCount".into(), self.user_ratings_total.into());
        place.insert("iconMaskBaseUri".into(), self.icon_mask_base_uri().into());
        place.insert("iconBackgroundColor".into(), self.kind.color.into());
        place.insert(
            "displayName".into(),
            object([("text", self.name().into()), ("languageCode", "en".into())]),
        );
        if let Some(open_now) = self.open_now {
            place.insert(
                "currentOpeningHours".into(),
                object([("openNow", open_now.into())]),
            );
        }
        if let Some(photo) = &self.photo {
            let (width, height) = photo.size();
            place.insert(
                "photos".into(),
                Value::Array(vec![object([
                    (
                        "name",
                        format!("places/{}/photos/{}", self.id, photo.reference).into(),
                    ),
                    ("widthPx", width.into()),
                    ("heightPx", height.into()),
                    (
                        "authorAttributions",
                        Value::Array(vec![object([
                            ("displayName", photo.contributor_name().into()),
                            ("uri", photo.contributor_uri().into()),
                        ])]),
                    ),
                ])]),
            );
        }
        if with_short {
            place.insert("shortFormattedAddress".into(), self.vicinity().into());
        }
        Value::Object(place)
    }
}

impl MadeUpPhoto {
    fn contributor_uri(&self) -> String {
        format!(
            "https://places-stub.invalid/contributors/{}",
            self.contributor
        )
    }

    fn contributor_name(&self) -> String {
        format!("Made-up Contributor {}", self.contributor)
    }

    /// Width and height in pixels.
    fn size(&self) -> (u32, u32) {
        if self.landscape {
            (4032, 3024)
        } else {
            (3024, 4032)
        }
    }
}

/// The point `distance` metres from (`lat`, `lng`) along the great circle
/// starting at `bearing` radians from north. Exact on the sphere, so it
/// holds near the poles and across the date line too.
fn destination(lat: f64, lng: f64, distance: f64, bearing: f64) -> (f64, f64) {
    let angle = distance / EARTH_RADIUS_M;
    let (phi1, lambda1) = (lat.to_radians(), lng.to_radians());
    let phi2 = (phi1.sin() * angle.cos() + phi1.cos() * angle.sin() * bearing.cos()).asin();
    let lambda2 = lambda1
        + (bearing.sin() * angle.sin() * phi1.cos()).atan2(angle.cos() - phi1.sin() * phi2.sin());
    let lng2 = (lambda2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    (phi2.to_degrees(), lng2)
}

/// `{"lat": …, "lng": …}` with seven decimals, as Google writes them;
/// clamped into range so a viewport near a pole or the date line stays
/// valid.
fn lat_lng(lat: f64, lng: f64) -> Value {
    object([
        ("lat", number_value(seven_decimals(lat.clamp(-90.0, 90.0)))),
        (
            "lng",
            number_value(seven_decimals(lng.clamp(-180.0, 180.0))),
        ),
    ])
}

/// A Places API (New) `LatLng`: the same numbers as [`lat_lng`], under
/// the New API's names.
fn new_lat_lng(lat: f64, lng: f64) -> Value {
    object([
        (
            "latitude",
            number_value(seven_decimals(lat.clamp(-90.0, 90.0))),
        ),
        (
            "longitude",
            number_value(seven_decimals(lng.clamp(-180.0, 180.0))),
        ),
    ])
}

/// Seven decimals, never "-0.0000000".
pub(crate) fn seven_decimals(degrees: f64) -> String {
    let text = format!("{degrees:.7}");
    match text.strip_prefix('-') {
        Some(unsigned) if unsigned.bytes().all(|b| b == b'0' || b == b'.') => unsigned.to_owned(),
        _ => text,
    }
}

/// The 10-digit Open Location Code ("plus code") of a point, like
/// "8553XCG3+6Q": pairs of base-20 digits for latitude and longitude,
/// down to cells of 1/8000 degree.
pub(crate) fn plus_code(lat: f64, lng: f64) -> String {
    const DIGITS: &[u8; 20] = b"23456789CFGHJMPQRVWX";
    const CELLS_PER_DEGREE: f64 = 8000.0;
    let lat_cells = ((lat + 90.0) * CELLS_PER_DEGREE).floor() as u64;
    let lat_cells = lat_cells.min(180 * 8000 - 1);
    let lng_cells = ((lng + 180.0) * CELLS_PER_DEGREE).floor() as u64 % (360 * 8000);
    let mut code = String::with_capacity(11);
    for place in (0..5).rev() {
        let scale = 20u64.pow(place);
        code.push(char::from(DIGITS[((lat_cells / scale) % 20) as usize]));
        code.push(char::from(DIGITS[((lng_cells / scale) % 20) as usize]));
        if place == 1 {
            code.push('+');
        }
    }
    code
}

/// A JSON number with exactly this text (kept as is thanks to
/// serde_json's `arbitrary_precision`).
fn number_value(text: String) -> Value {
    Value::Number(text.parse().expect("the stub writes valid JSON numbers"))
}

/// An object with these members, in this order.
pub(super) fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// FNV-1a: a tiny, stable hash, so the same query seeds the same places
/// on every run and every platform (std's hasher is randomly keyed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: a small deterministic generator; enough for made-up data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in [0, bound).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
