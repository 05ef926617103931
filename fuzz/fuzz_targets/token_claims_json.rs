//! F-2: structure-aware JSON (any value, with duplicate keys and deep nesting allowed) into the
//! strict claims parser. Never panics; whatever it accepts round-trips exactly.
#![no_main]

use arbitrary::Arbitrary;
use cairn_token::Claims;
use libfuzzer_sys::fuzz_target;

/// A JSON tree whose objects may repeat keys (serde_json::Value cannot express that).
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Known(KnownKey),
    Array(Vec<Json>),
    Object(Vec<(Key, Json)>),
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(KnownKey),
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KnownKey {
    Iss,
    Aud,
    Sub,
    Tid,
    Dev,
    Role,
    Cap,
    Iat,
    Nbf,
    Exp,
    Jti,
    CapName(u8),
    Time(u8),
}

impl KnownKey {
    fn text(self) -> String {
        match self {
            KnownKey::Iss => "iss".into(),
            KnownKey::Aud => "aud".into(),
            KnownKey::Sub => "sub".into(),
            KnownKey::Tid => "tid".into(),
            KnownKey::Dev => "dev".into(),
            KnownKey::Role => "role".into(),
            KnownKey::Cap => "cap".into(),
            KnownKey::Iat => "iat".into(),
            KnownKey::Nbf => "nbf".into(),
            KnownKey::Exp => "exp".into(),
            KnownKey::Jti => "jti".into(),
            KnownKey::CapName(n) => {
                ["backup:put", "backup:read", "admin", "user", "service"][usize::from(n) % 5].into()
            }
            KnownKey::Time(n) => format!("2026-11-27T13:{:02}:00Z", n % 60),
        }
    }
}

fn write(j: &Json, out: &mut String, depth: usize) {
    if depth > 200 {
        out.push_str("null");
        return;
    }
    match j {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => out.push_str(&i.to_string()),
        Json::Float(f) => out.push_str(&serde_json::to_string(f).unwrap_or_else(|_| "0".into())),
        Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Json::Known(k) => out.push_str(&serde_json::to_string(&k.text()).unwrap_or_default()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out, depth + 1);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let key = match k {
                    Key::Known(k) => k.text(),
                    Key::Other(s) => s.clone(),
                };
                out.push_str(&serde_json::to_string(&key).unwrap_or_default());
                out.push(':');
                write(v, out, depth + 1);
            }
            out.push('}');
        }
    }
}

fuzz_target!(|input: (Json, &[u8])| {
    let (tree, raw) = input;
    let mut text = String::new();
    write(&tree, &mut text, 0);
    for bytes in [text.as_bytes(), raw] {
        if let Ok(claims) = Claims::from_json(bytes) {
            let again = Claims::from_json(&claims.to_json()).expect("own output parses");
            assert_eq!(again, claims);
        }
    }
});
