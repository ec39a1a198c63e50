//! Values whose JSON form is the text a person writes (`80/tcp`, `8080:80/udp`): serialized with their
//! `Display`, read back through their `FromStr`, so the file and the command line share one parser.

/// Implements `Serialize` (as `Display`) and `Deserialize` (through `FromStr`, its error as the message).
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use serde_as_text;
