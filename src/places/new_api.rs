//! Places API (New) (src/places/README.md#places-api-new): the request the herd sends to
//! Nearby Search (New), and its answer turned into the legacy shape.
//!
//! Clients of the herd were written against the legacy Nearby Search
//! answer and cannot be changed, so a herd using the New API has to answer
//! them with replies they cannot tell from legacy ones. Everything the New
//! API adds is dropped; everything the legacy answer had and the New one
//! still carries is moved to its legacy name, as the table of
//! src/places/README.md#places-api-new says.
//!
//! Three things shape this module:
//! - The field mask is the bill. The New API charges a request at the
//!   highest price tier of the fields it asks for, so [`FIELD_MASK`]
//!   names exactly the fields the mapping reads and nothing more; a test
//!   checks the two agree.
//! - Google's proto3 JSON leaves out fields that have no value, so every
//!   field may be missing. A missing field is left out of the legacy place
//!   too, never written as `null`, which no legacy answer contains.
//! - Numbers keep their digits: serde_json runs with `arbitrary_precision`,
//!   so a rating of `4.50` or a latitude of `34.0689255` is copied as the
//!   text Google sent, as the legacy answer carried it.
//!
//! Everything here is pure: no I/O, no logging.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::places::layout::styled;
use crate::places::{error_json, PlacesError, PlacesStatus};
use crate::protocol::Location;

/// Google's Nearby Search (New) endpoint, the default in `new` mode.
pub const NEW_NEARBY_URL: &str = "https://places.googleapis.com/v1/places:searchNearby";

/// The `X-Goog-FieldMask` header: the New fields the mapping of
/// src/places/README.md#places-api-new reads, and no others, in alphabetical order.
pub const FIELD_MASK: &str = "places.businessStatus,\
places.currentOpeningHours,\
places.displayName,\
places.formattedAddress,\
places.iconBackgroundColor,\
places.iconMaskBaseUri,\
places.id,\
places.location,\
places.photos,\
places.plusCode,\
places.priceLevel,\
places.rating,\
places.shortFormattedAddress,\
places.types,\
places.userRatingCount,\
places.viewport";

/// The JSON body of the Nearby Search (New) request for `radius_m` metres
/// around `location`, at most `bound` places.
///
/// The coordinates are JSON numbers with the client's digits, as the
/// legacy `location=` parameter has them (src/protocol.md#whatsat-what-is-near): only the `+`
/// sign and leading zeros go, because JSON allows neither (`+034.5` is a
/// valid IAMAT latitude and becomes `34.5`).
pub fn request_body(location: &Location, radius_m: u32, bound: usize) -> String {
    let center = object([
        ("latitude", json_number(&location.lat)),
        ("longitude", json_number(&location.lng)),
    ]);
    let circle = object([("center", center), ("radius", Value::from(radius_m))]);
    let body = object([
        ("locationRestriction", object([("circle", circle)])),
        ("maxResultCount", Value::from(bound)),
    ]);
    body.to_string()
}

/// A signed decimal of an IAMAT (`+034.50`, `-118.445127`) as a JSON
/// number with the same digits: no `+`, no leading zeros before the point.
fn json_number(signed: &str) -> Value {
    let (sign, digits) = match signed.strip_prefix('-') {
        Some(unsigned) => ("-", unsigned),
        None => ("", signed.trim_start_matches('+')),
    };
    let trimmed = digits.trim_start_matches('0');
    let digits = if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    };
    let text = format!("{sign}{digits}");
    // A `Location` only ever holds decimals, which are valid JSON numbers
    // once trimmed; should that ever change, the request still goes out
    // (as a string), and Google's INVALID_ARGUMENT says what is wrong.
    text.parse::<Number>()
        .map(Value::Number)
        .unwrap_or(Value::String(text))
}

/// The legacy answer for a New answer: `body` as received with HTTP
/// status `http_status`, laid out as Google lays out legacy answers
/// (src/places/README.md#places-api-new). An error answer becomes the legacy error object.
pub fn legacy_json(http_status: u16, body: &str) -> String {
    match convert(http_status, body) {
        Ok(json) => json,
        Err(error) => error_json(error.status, &error.message),
    }
}

/// Like [`legacy_json`], but an error comes back as such, so the caller
/// can log its status.
pub fn convert(http_status: u16, body: &str) -> Result<String, PlacesError> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let answer = match parsed {
        Some(Value::Object(answer)) => answer,
        _ if http_status == 200 => {
            return Err(unknown(
                "Places (New) answered with something that is not a JSON object",
            ))
        }
        // A proxy or load balancer in between may answer an error in
        // HTML; the HTTP status still says which kind it is.
        _ => {
            return Err(PlacesError {
                status: error_class(http_status, None),
                message: format!("Places (New) answered HTTP {http_status}"),
            })
        }
    };
    if let Some(error) = answer.get("error") {
        return Err(api_error(http_status, error));
    }
    if http_status != 200 {
        return Err(PlacesError {
            status: error_class(http_status, None),
            message: format!("Places (New) answered HTTP {http_status}"),
        });
    }
    // No places at all is `{}`: proto3 leaves out an empty list.
    let places = match answer.get("places") {
        None => &[][..],
        Some(Value::Array(places)) => &places[..],
        Some(_) => return Err(unknown("Places (New) answered `places` that is not a list")),
    };
    let results = places
        .iter()
        .map(|place| match place {
            Value::Object(place) => Ok(legacy_place(place)),
            _ => Err(unknown(
                "Places (New) answered a place that is not an object",
            )),
        })
        .collect::<Result<Vec<Value>, PlacesError>>()?;
    let status = if results.is_empty() {
        "ZERO_RESULTS"
    } else {
        "OK"
    };
    Ok(styled(&object([
        ("html_attributions", Value::Array(Vec::new())),
        ("results", Value::Array(results)),
        ("status", status.into()),
    ])))
}

fn unknown(message: &str) -> PlacesError {
    PlacesError {
        status: PlacesStatus::UnknownError,
        message: message.to_string(),
    }
}

/// `{"code", "message", "status"}` of a New error answer in legacy terms.
fn api_error(http_status: u16, error: &Value) -> PlacesError {
    let message = match error.get("message").and_then(Value::as_str) {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => format!("Places (New) answered HTTP {http_status}"),
    };
    PlacesError {
        status: error_class(http_status, error.get("status").and_then(Value::as_str)),
        message,
    }
}

/// The legacy status of a New error. Google's own status name decides
/// when it is one of the known ones; otherwise the HTTP status does, so
/// an error without a body is classed as well as one with.
fn error_class(http_status: u16, google_status: Option<&str>) -> PlacesStatus {
    match google_status {
        Some("PERMISSION_DENIED" | "UNAUTHENTICATED") => return PlacesStatus::RequestDenied,
        Some("INVALID_ARGUMENT") => return PlacesStatus::InvalidRequest,
        Some("RESOURCE_EXHAUSTED") => return PlacesStatus::OverQueryLimit,
        _ => {}
    }
    match http_status {
        401 | 403 => PlacesStatus::RequestDenied,
        400 => PlacesStatus::InvalidRequest,
        429 => PlacesStatus::OverQueryLimit,
        _ => PlacesStatus::UnknownError,
    }
}

/// One New place as a legacy result: the rows of the table of
/// src/places/README.md#places-api-new, each written only when the New
/// place has what it needs. A `BTreeMap` keeps the keys sorted, as Google
/// sorts them.
fn legacy_place(place: &Map<String, Value>) -> Value {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_string(), value);
        }
    };
    let get = |key: &str| place.get(key).filter(|value| !value.is_null());
    let text = |key: &str| get(key).and_then(Value::as_str);

    put("business_status", get("businessStatus").cloned());
    put("geometry", geometry(get("location"), get("viewport")));
    put(
        "icon",
        text("iconMaskBaseUri").map(|base| format!("{base}.png").into()),
    );
    put("icon_background_color", get("iconBackgroundColor").cloned());
    put("icon_mask_base_uri", get("iconMaskBaseUri").cloned());
    put(
        "name",
        get("displayName").and_then(|name| present(name, "text")),
    );
    put(
        "opening_hours",
        get("currentOpeningHours")
            .and_then(|hours| present(hours, "openNow"))
            .map(|open_now| sorted([("open_now", Some(open_now))])),
    );
    put("photos", get("photos").and_then(photos));
    put("place_id", get("id").cloned());
    put("reference", get("id").cloned());
    put("plus_code", get("plusCode").and_then(plus_code));
    put("price_level", text("priceLevel").and_then(price_level));
    put("rating", get("rating").cloned());
    // Every legacy result says "GOOGLE"; the New API has no other scope.
    put("scope", Some("GOOGLE".into()));
    put("types", get("types").cloned());
    put("user_ratings_total", get("userRatingCount").cloned());
    put(
        "vicinity",
        get("shortFormattedAddress")
            .or_else(|| get("formattedAddress"))
            .cloned(),
    );
    Value::Object(out.into_iter().collect())
}

/// `value[key]`, unless it is missing or `null`.
fn present(value: &Value, key: &str) -> Option<Value> {
    value.get(key).filter(|found| !found.is_null()).cloned()
}

/// `geometry`: `location` from the place's point, `viewport` from its
/// box; left out when the place has neither.
fn geometry(location: Option<&Value>, viewport: Option<&Value>) -> Option<Value> {
    let viewport = viewport.and_then(|viewport| {
        non_empty(sorted([
            ("northeast", viewport.get("high").and_then(lat_lng)),
            ("southwest", viewport.get("low").and_then(lat_lng)),
        ]))
    });
    non_empty(sorted([
        ("location", location.and_then(lat_lng)),
        ("viewport", viewport),
    ]))
}

/// A New `LatLng` (`{"latitude", "longitude"}`) as a legacy `{"lat",
/// "lng"}`. Proto3 JSON leaves out a coordinate that is exactly 0 (a
/// place on the equator or the prime meridian), so inside a point that is
/// there, a missing coordinate is 0, not unknown.
fn lat_lng(point: &Value) -> Option<Value> {
    let point = point.as_object()?;
    let coordinate = |key: &str| {
        point
            .get(key)
            .filter(|value| !value.is_null())
            .cloned()
            .unwrap_or_else(|| Value::from(0))
    };
    Some(sorted([
        ("lat", Some(coordinate("latitude"))),
        ("lng", Some(coordinate("longitude"))),
    ]))
}

/// Legacy `photos` from New ones; left out when the place has none.
fn photos(photos: &Value) -> Option<Value> {
    let photos: Vec<Value> = photos
        .as_array()?
        .iter()
        .filter_map(|photo| {
            photo.as_object()?;
            Some(sorted([
                ("height", present(photo, "heightPx")),
                ("html_attributions", Some(attributions(photo))),
                ("photo_reference", present(photo, "name")),
                ("width", present(photo, "widthPx")),
            ]))
        })
        .collect();
    (!photos.is_empty()).then_some(Value::Array(photos))
}

/// A photo's `authorAttributions` as the legacy HTML links. A photo
/// without attributions gets an empty list, not no list: every legacy
/// photo has `html_attributions`, and "none" is what the New photo says.
fn attributions(photo: &Value) -> Value {
    let authors = photo
        .get("authorAttributions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let links = authors.iter().filter_map(|author| {
        let name = author.get("displayName").and_then(Value::as_str);
        let uri = author.get("uri").and_then(Value::as_str);
        match (uri, name) {
            (Some(uri), name) => Some(format!(
                "<a href=\"{}\">{}</a>",
                super::html_escape(uri),
                super::html_escape(name.unwrap_or(uri))
            )),
            (None, Some(name)) => Some(super::html_escape(name)),
            (None, None) => None,
        }
    });
    Value::Array(links.map(Value::String).collect())
}

/// `plus_code`; left out when the place has neither code.
fn plus_code(code: &Value) -> Option<Value> {
    non_empty(sorted([
        ("compound_code", present(code, "compoundCode")),
        ("global_code", present(code, "globalCode")),
    ]))
}

/// The legacy 0-4 price level of a New `PriceLevel`. `UNSPECIFIED` (and
/// any level Google may add) has no legacy number, so it is left out.
fn price_level(level: &str) -> Option<Value> {
    let number = match level {
        "PRICE_LEVEL_FREE" => 0,
        "PRICE_LEVEL_INEXPENSIVE" => 1,
        "PRICE_LEVEL_MODERATE" => 2,
        "PRICE_LEVEL_EXPENSIVE" => 3,
        "PRICE_LEVEL_VERY_EXPENSIVE" => 4,
        _ => return None,
    };
    Some(Value::from(number))
}

/// An object of the members that are there, keys sorted.
fn sorted<const N: usize>(members: [(&str, Option<Value>); N]) -> Value {
    let members: BTreeMap<String, Value> = members
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect();
    Value::Object(members.into_iter().collect())
}

/// `Some(object)` unless it has no members.
fn non_empty(object: Value) -> Option<Value> {
    match &object {
        Value::Object(members) if members.is_empty() => None,
        _ => Some(object),
    }
}

/// An object with these members, in this order.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses JSON text, keeping digits and key order.
    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    /// The legacy result for one New place given as JSON text.
    fn one(place: &str) -> Value {
        let text = convert(200, &format!("{{\"places\": [{place}]}}")).unwrap();
        let mut value = parse(&text);
        assert_eq!(value["status"], "OK");
        let results = value["results"].as_array_mut().unwrap();
        assert_eq!(results.len(), 1);
        results.remove(0)
    }

    /// A New place carrying every field the mapping reads, as Google
    /// writes them (values made up).
    const FULL_PLACE: &str = r##"{
        "id": "ChIJ-made-up",
        "types": ["cafe", "food", "point_of_interest", "establishment"],
        "formattedAddress": "1 Long Street, Made-up Town, CA 90024, USA",
        "shortFormattedAddress": "1 Long Street, Made-up Town",
        "plusCode": {"globalCode": "8553XCG3+6Q", "compoundCode": "XCG3+6Q Made-up Town"},
        "location": {"latitude": 34.0689255, "longitude": -118.4451338},
        "viewport": {
            "low": {"latitude": 34.067576519, "longitude": -118.44648278},
            "high": {"latitude": 34.070274480, "longitude": -118.44378482}
        },
        "rating": 4.50,
        "businessStatus": "OPERATIONAL",
        "priceLevel": "PRICE_LEVEL_MODERATE",
        "userRatingCount": 1234,
        "iconMaskBaseUri": "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
        "iconBackgroundColor": "#FF9E67",
        "displayName": {"text": "Made-up Cafe", "languageCode": "en"},
        "currentOpeningHours": {"openNow": true, "weekdayDescriptions": ["Monday: 8 AM"]},
        "photos": [{
            "name": "places/ChIJ-made-up/photos/REF1",
            "widthPx": 4032,
            "heightPx": 3024,
            "authorAttributions": [{
                "displayName": "Made-up Author",
                "uri": "https://maps.google.com/maps/contrib/1",
                "photoUri": "https://lh3.googleusercontent.com/a/x"
            }]
        }]
    }"##;

    /// The whole answer for a full place, byte for byte: every row of the
    /// table of src/places/README.md#places-api-new at once, keys sorted,
    /// numbers with the digits sent, and Google's layout.
    #[test]
    fn full_place_converts_exactly() {
        let text = convert(200, &format!("{{\"places\": [{FULL_PLACE}]}}")).unwrap();
        let expected = r##"{
   "html_attributions" : [],
   "results" : [
      {
         "business_status" : "OPERATIONAL",
         "geometry" : {
            "location" : {
               "lat" : 34.0689255,
               "lng" : -118.4451338
            },
            "viewport" : {
               "northeast" : {
                  "lat" : 34.070274480,
                  "lng" : -118.44378482
               },
               "southwest" : {
                  "lat" : 34.067576519,
                  "lng" : -118.44648278
               }
            }
         },
         "icon" : "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet.png",
         "icon_background_color" : "#FF9E67",
         "icon_mask_base_uri" : "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
         "name" : "Made-up Cafe",
         "opening_hours" : {
            "open_now" : true
         },
         "photos" : [
            {
               "height" : 3024,
               "html_attributions" : [
                  "\u003ca href=\"https://maps.google.com/maps/contrib/1\"\u003eMade-up Author\u003c/a\u003e"
               ],
               "photo_reference" : "places/ChIJ-made-up/photos/REF1",
               "width" : 4032
            }
         ],
         "place_id" : "ChIJ-made-up",
         "plus_code" : {
            "compound_code" : "XCG3+6Q Made-up Town",
            "global_code" : "8553XCG3+6Q"
         },
         "price_level" : 2,
         "rating" : 4.50,
         "reference" : "ChIJ-made-up",
         "scope" : "GOOGLE",
         "types" : [ "cafe", "food", "point_of_interest", "establishment" ],
         "user_ratings_total" : 1234,
         "vicinity" : "1 Long Street, Made-up Town"
      }
   ],
   "status" : "OK"
}
"##;
        assert_eq!(text, expected);
    }

    /// `business_status` is `businessStatus`.
    #[test]
    fn row_business_status() {
        let place = one(r#"{"businessStatus": "CLOSED_TEMPORARILY"}"#);
        assert_eq!(place["business_status"], "CLOSED_TEMPORARILY");
    }

    /// `geometry.location` is `location` as `lat`/`lng`, digits kept.
    #[test]
    fn row_geometry_location() {
        let place = one(r#"{"location": {"latitude": 1.2345678901, "longitude": -0.5}}"#);
        let location = &place["geometry"]["location"];
        assert_eq!(
            location["lat"].as_number().unwrap().as_str(),
            "1.2345678901"
        );
        assert_eq!(location["lng"].as_number().unwrap().as_str(), "-0.5");
        assert!(place["geometry"].get("viewport").is_none());
    }

    /// Proto3 JSON leaves out a coordinate of exactly 0; inside a point
    /// that is there, that coordinate is 0.
    #[test]
    fn row_geometry_zero_coordinate() {
        let place = one(r#"{"location": {"longitude": 12.5}}"#);
        assert_eq!(
            place["geometry"]["location"],
            json!({"lat": 0, "lng": 12.5})
        );
    }

    /// `geometry.viewport.northeast`/`.southwest` are `viewport.high`/`.low`.
    #[test]
    fn row_geometry_viewport() {
        let place = one(r#"{"viewport": {"low": {"latitude": 1, "longitude": 2},
                             "high": {"latitude": 3, "longitude": 4}}}"#);
        assert_eq!(
            place["geometry"],
            json!({"viewport": {"northeast": {"lat": 3, "lng": 4},
                                "southwest": {"lat": 1, "lng": 2}}})
        );
        let keys: Vec<&String> = place["geometry"]["viewport"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["northeast", "southwest"]);
    }

    /// `icon` is `iconMaskBaseUri` + `.png`, `icon_mask_base_uri` is
    /// `iconMaskBaseUri`, `icon_background_color` is `iconBackgroundColor`.
    #[test]
    fn row_icons() {
        let place = one(r##"{"iconMaskBaseUri": "https://x.invalid/i/park_pinlet",
                             "iconBackgroundColor": "#4DB546"}"##);
        assert_eq!(place["icon"], "https://x.invalid/i/park_pinlet.png");
        assert_eq!(
            place["icon_mask_base_uri"],
            "https://x.invalid/i/park_pinlet"
        );
        assert_eq!(place["icon_background_color"], "#4DB546");
        let colour_only = one(r##"{"iconBackgroundColor": "#4DB546"}"##);
        assert!(colour_only.get("icon").is_none());
        assert!(colour_only.get("icon_mask_base_uri").is_none());
    }

    /// `name` is `displayName.text`; a display name without text gives no
    /// name.
    #[test]
    fn row_name() {
        let place =
            one(r#"{"displayName": {"text": "Café <Ünïcode> & Co", "languageCode": "fr"}}"#);
        assert_eq!(place["name"], "Café <Ünïcode> & Co");
        assert!(one(r#"{"displayName": {"languageCode": "fr"}}"#)
            .get("name")
            .is_none());
    }

    /// `opening_hours.open_now` is `currentOpeningHours.openNow`, false
    /// included; hours without `openNow` give no `opening_hours`.
    #[test]
    fn row_opening_hours() {
        let closed = one(r#"{"currentOpeningHours": {"openNow": false}}"#);
        assert_eq!(closed["opening_hours"], json!({"open_now": false}));
        let open = one(r#"{"currentOpeningHours": {"openNow": true, "periods": []}}"#);
        assert_eq!(open["opening_hours"], json!({"open_now": true}));
        let unknown = one(r#"{"currentOpeningHours": {"periods": []}}"#);
        assert!(unknown.get("opening_hours").is_none());
    }

    /// `photos[]`: `height`/`width` from `heightPx`/`widthPx`,
    /// `photo_reference` from `name`, and one HTML link per author,
    /// escaped, in order.
    #[test]
    fn row_photos() {
        let place = one(r#"{"photos": [
                {"name": "places/P/photos/A", "widthPx": 100, "heightPx": 200,
                 "authorAttributions": [
                    {"displayName": "Ann \"A\" & Bo", "uri": "https://x.invalid/c/1?a=1&b=2"},
                    {"displayName": "Cy", "uri": "https://x.invalid/c/2"}]},
                {"name": "places/P/photos/B", "widthPx": 1, "heightPx": 2}
            ]}"#);
        assert_eq!(
            place["photos"],
            json!([
                {"height": 200,
                 "html_attributions": [
                    "<a href=\"https://x.invalid/c/1?a=1&amp;b=2\">Ann &quot;A&quot; &amp; Bo</a>",
                    "<a href=\"https://x.invalid/c/2\">Cy</a>"],
                 "photo_reference": "places/P/photos/A",
                 "width": 100},
                {"height": 2, "html_attributions": [],
                 "photo_reference": "places/P/photos/B", "width": 1}
            ])
        );
        let keys: Vec<&String> = place["photos"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["height", "html_attributions", "photo_reference", "width"]
        );
        assert!(one(r#"{"photos": []}"#).get("photos").is_none());
    }

    /// `place_id` and `reference` are both `id`.
    #[test]
    fn row_place_id_and_reference() {
        let place = one(r#"{"id": "ChIJabc"}"#);
        assert_eq!(place["place_id"], "ChIJabc");
        assert_eq!(place["reference"], "ChIJabc");
    }

    /// `plus_code.global_code`/`.compound_code` are
    /// `plusCode.globalCode`/`.compoundCode`, each only when present.
    #[test]
    fn row_plus_code() {
        let place = one(r#"{"plusCode": {"globalCode": "G", "compoundCode": "C"}}"#);
        assert_eq!(
            place["plus_code"],
            json!({"compound_code": "C", "global_code": "G"})
        );
        let global = one(r#"{"plusCode": {"globalCode": "G"}}"#);
        assert_eq!(global["plus_code"], json!({"global_code": "G"}));
        assert!(one(r#"{"plusCode": {}}"#).get("plus_code").is_none());
    }

    /// `price_level` is the number of each `PriceLevel`; an unspecified
    /// level is left out.
    #[test]
    fn row_price_level() {
        for (level, number) in [
            ("PRICE_LEVEL_FREE", 0),
            ("PRICE_LEVEL_INEXPENSIVE", 1),
            ("PRICE_LEVEL_MODERATE", 2),
            ("PRICE_LEVEL_EXPENSIVE", 3),
            ("PRICE_LEVEL_VERY_EXPENSIVE", 4),
        ] {
            let place = one(&format!("{{\"priceLevel\": \"{level}\"}}"));
            assert_eq!(place["price_level"], json!(number), "{level}");
        }
        let unspecified = one(r#"{"priceLevel": "PRICE_LEVEL_UNSPECIFIED"}"#);
        assert!(unspecified.get("price_level").is_none());
    }

    /// `rating` is `rating` with its digits; `user_ratings_total` is
    /// `userRatingCount`.
    #[test]
    fn row_rating_and_count() {
        let place = one(r#"{"rating": 4.0, "userRatingCount": 7}"#);
        assert_eq!(place["rating"].as_number().unwrap().as_str(), "4.0");
        assert_eq!(place["user_ratings_total"], json!(7));
    }

    /// `scope` is always "GOOGLE", even for a place with nothing else.
    #[test]
    fn row_scope() {
        assert_eq!(one("{}"), json!({"scope": "GOOGLE"}));
    }

    /// `types` is `types`, in order.
    #[test]
    fn row_types() {
        let place = one(r#"{"types": ["park", "point_of_interest"]}"#);
        assert_eq!(place["types"], json!(["park", "point_of_interest"]));
    }

    /// `vicinity` is `shortFormattedAddress`, else `formattedAddress`.
    #[test]
    fn row_vicinity() {
        let both = one(r#"{"shortFormattedAddress": "short", "formattedAddress": "long"}"#);
        assert_eq!(both["vicinity"], "short");
        let long = one(r#"{"formattedAddress": "long"}"#);
        assert_eq!(long["vicinity"], "long");
    }

    /// Fields the New place lacks, or has as `null`, are left out: never
    /// `null`, never an empty object.
    #[test]
    fn missing_fields_are_left_out() {
        let place = one(r#"{"id": "X", "displayName": null, "rating": null,
                "location": null, "viewport": null, "photos": null,
                "currentOpeningHours": null, "plusCode": null}"#);
        assert_eq!(
            place,
            json!({"place_id": "X", "reference": "X", "scope": "GOOGLE"})
        );
        let text = convert(200, r#"{"places": [{"id": "X", "rating": null}]}"#).unwrap();
        assert!(!text.contains("null"), "{text}");
    }

    /// Every place's keys come out sorted, whatever order Google used.
    #[test]
    fn keys_are_sorted() {
        let place = one(FULL_PLACE);
        let keys: Vec<&String> = place.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 17, "{keys:?}");
    }

    /// Places keep their order, and `{}` (proto3 for "no places") or an
    /// empty list is ZERO_RESULTS with the legacy top level.
    #[test]
    fn order_and_zero_results() {
        let text = convert(
            200,
            r#"{"places": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}"#,
        )
        .unwrap();
        let ids: Vec<Value> = parse(&text)["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|place| place["place_id"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
        let zero = "{\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"ZERO_RESULTS\"\n}\n";
        assert_eq!(convert(200, "{}").unwrap(), zero);
        assert_eq!(convert(200, r#"{"places": []}"#).unwrap(), zero);
    }

    /// A New error answer of each kind becomes its legacy status with
    /// Google's message, in the legacy error object's exact shape.
    #[test]
    fn error_classes() {
        let cases = [
            (403, "PERMISSION_DENIED", "REQUEST_DENIED"),
            (401, "UNAUTHENTICATED", "REQUEST_DENIED"),
            (400, "INVALID_ARGUMENT", "INVALID_REQUEST"),
            (429, "RESOURCE_EXHAUSTED", "OVER_QUERY_LIMIT"),
            (500, "INTERNAL", "UNKNOWN_ERROR"),
            (503, "UNAVAILABLE", "UNKNOWN_ERROR"),
            (404, "NOT_FOUND", "UNKNOWN_ERROR"),
        ];
        for (code, google, legacy) in cases {
            let body = format!(
                r#"{{"error": {{"code": {code}, "message": "made-up {google} <&>", "status": "{google}"}}}}"#
            );
            let error = convert(code, &body).unwrap_err();
            assert_eq!(error.status.as_str(), legacy, "{google}");
            assert_eq!(error.message, format!("made-up {google} <&>"));
            assert_eq!(
                legacy_json(code, &body),
                format!(
                    "{{\n   \"error_message\" : \"made-up {google} \\u003c\\u0026\\u003e\",\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"{legacy}\"\n}}\n"
                )
            );
        }
    }

    /// Either Google's status name or the HTTP status classes an error:
    /// the name wins when it is known, the code otherwise, and a body that
    /// is not JSON is classed by its code alone.
    #[test]
    fn error_class_sources() {
        let status_only = r#"{"error": {"message": "m", "status": "PERMISSION_DENIED"}}"#;
        assert_eq!(
            convert(200, status_only).unwrap_err().status.as_str(),
            "REQUEST_DENIED"
        );
        let code_only = r#"{"error": {"code": 429, "message": "m"}}"#;
        assert_eq!(
            convert(429, code_only).unwrap_err().status.as_str(),
            "OVER_QUERY_LIMIT"
        );
        let odd_name = r#"{"error": {"message": "m", "status": "FAILED_PRECONDITION"}}"#;
        assert_eq!(
            convert(401, odd_name).unwrap_err().status.as_str(),
            "REQUEST_DENIED"
        );
        for (code, legacy) in [
            (403, "REQUEST_DENIED"),
            (400, "INVALID_REQUEST"),
            (429, "OVER_QUERY_LIMIT"),
            (502, "UNKNOWN_ERROR"),
        ] {
            let error = convert(code, "<html>Bad Gateway</html>").unwrap_err();
            assert_eq!(error.status.as_str(), legacy, "{code}");
            assert_eq!(error.message, format!("Places (New) answered HTTP {code}"));
        }
        let no_message = convert(403, r#"{"error": {"code": 403}}"#).unwrap_err();
        assert_eq!(no_message.message, "Places (New) answered HTTP 403");
        let not_error = convert(500, r#"{"places": []}"#).unwrap_err();
        assert_eq!(not_error.status, PlacesStatus::UnknownError);
    }

    /// A 200 whose body is not a JSON object, or whose places are not a
    /// list of objects, is UNKNOWN_ERROR.
    #[test]
    fn malformed_answers_are_unknown_error() {
        for body in [
            "",
            "not json",
            "[1, 2]",
            "\"x\"",
            r#"{"places": 3}"#,
            r#"{"places": [1]}"#,
        ] {
            let error = convert(200, body).unwrap_err();
            assert_eq!(error.status, PlacesStatus::UnknownError, "{body}");
            assert!(error.message.starts_with("Places (New) answered"), "{body}");
        }
    }

    /// The request body has exactly the structure
    /// src/places/README.md#places-api-new gives, and values with the
    /// client's digits and no `+`.
    #[test]
    fn request_body_values() {
        let location = Location::parse("+34.068930-118.445127").unwrap();
        let body = request_body(&location, 10_000, 5);
        let expected = concat!(
            r#"{"locationRestriction":{"circle":{"center":"#,
            r#"{"latitude":34.068930,"longitude":-118.445127},"#,
            r#""radius":10000}},"maxResultCount":5}"#
        );
        assert_eq!(body, expected);
        let parsed = parse(&body);
        let center = &parsed["locationRestriction"]["circle"]["center"];
        assert_eq!(
            center["latitude"].as_number().unwrap().as_str(),
            "34.068930"
        );
        assert_eq!(
            center["longitude"].as_number().unwrap().as_str(),
            "-118.445127"
        );
        assert_eq!(
            parsed["locationRestriction"]["circle"]["radius"],
            json!(10000)
        );
        assert_eq!(parsed["maxResultCount"], json!(5));
    }

    /// Coordinates JSON cannot spell as sent lose only what JSON forbids:
    /// the `+` and leading zeros.
    #[test]
    fn request_body_numbers_are_json() {
        for (iamat, lat, lng) in [
            ("+034.50-000.25", "34.50", "-0.25"),
            ("+0-0", "0", "-0"),
            ("-00+180", "-0", "180"),
            ("+90.000-180.0000", "90.000", "-180.0000"),
        ] {
            let location = Location::parse(iamat).unwrap();
            let parsed = parse(&request_body(&location, 1, 1));
            let center = &parsed["locationRestriction"]["circle"]["center"];
            assert_eq!(
                center["latitude"].as_number().unwrap().as_str(),
                lat,
                "{iamat}"
            );
            assert_eq!(
                center["longitude"].as_number().unwrap().as_str(),
                lng,
                "{iamat}"
            );
        }
    }

    /// The field mask names exactly the New fields the mapping reads: a
    /// place with every masked field converts every one of them into
    /// something, and each is needed (dropping it changes the result).
    #[test]
    fn field_mask_matches_mapping() {
        let fields: Vec<&str> = FIELD_MASK
            .split(',')
            .map(|path| path.strip_prefix("places.").expect("places.* path"))
            .collect();
        let mut sorted = fields.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(fields, sorted, "alphabetical, no repeats");
        assert!(!FIELD_MASK.contains(' '));
        let full: Map<String, Value> = match parse(FULL_PLACE) {
            Value::Object(full) => full,
            _ => unreachable!(),
        };
        let mut given: Vec<&str> = full.keys().map(String::as_str).collect();
        given.sort();
        assert_eq!(
            fields, given,
            "the full place has exactly the masked fields"
        );
        // `formattedAddress` is only the fallback of `vicinity`, so it is
        // checked on a place without `shortFormattedAddress`.
        let mut short_less = full.clone();
        short_less.remove("shortFormattedAddress");
        for field in fields {
            let base = if field == "formattedAddress" {
                &short_less
            } else {
                &full
            };
            let mut without = base.clone();
            without.remove(field);
            assert_ne!(
                legacy_place(&without),
                legacy_place(base),
                "{field} is unused"
            );
        }
    }
}
