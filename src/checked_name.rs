//! Text that has passed a rule: a name type that cannot hold a value its rule refuses. Parsed once at the
//! edge (the CNI environment, a config, a record read back from disk), then passed around as the type; it
//! reads as `&str` everywhere (`Deref`), so code that only looks at the text needs no conversion.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

/// What a [`Checked`] name must satisfy.
pub trait NameRule {
    /// What the name is, for messages ("interface name", "container ID").
    const WHAT: &'static str;
    /// Why `text` is refused, or `None` when it passes.
    fn problem(text: &str) -> Option<&'static str>;
}

/// A name `R` accepts.
pub struct Checked<R> {
    text: String,
    rule: PhantomData<R>,
}

/// A name refused by its rule: which name, what it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct NameError {
    pub what: &'static str,
    pub text: String,
    pub why: &'static str,
}

impl<R: NameRule> Checked<R> {
    pub fn new(text: impl Into<String>) -> Result<Checked<R>, NameError> {
        let text = text.into();
        match R::problem(&text) {
            Some(why) => Err(NameError {
                what: R::WHAT,
                text,
                why,
            }),
            None => Ok(Checked {
                text,
                rule: PhantomData,
            }),
        }
    }
}

impl<R> Checked<R> {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

impl<R> Deref for Checked<R> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<R> AsRef<str> for Checked<R> {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl<R> AsRef<std::path::Path> for Checked<R> {
    fn as_ref(&self) -> &std::path::Path {
        self.text.as_ref()
    }
}

impl<R> Clone for Checked<R> {
    fn clone(&self) -> Self {
        Checked {
            text: self.text.clone(),
            rule: PhantomData,
        }
    }
}

impl<R> PartialEq for Checked<R> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<R> Eq for Checked<R> {}

impl<R> std::hash::Hash for Checked<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}

impl<R> PartialOrd for Checked<R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<R> Ord for Checked<R> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl<R> PartialEq<str> for Checked<R> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl<R> PartialEq<&str> for Checked<R> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<R> PartialEq<String> for Checked<R> {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl<R> PartialEq<Checked<R>> for str {
    fn eq(&self, other: &Checked<R>) -> bool {
        self == other.text
    }
}

impl<R> PartialEq<Checked<R>> for &str {
    fn eq(&self, other: &Checked<R>) -> bool {
        *self == other.text
    }
}

impl<R> PartialEq<Checked<R>> for String {
    fn eq(&self, other: &Checked<R>) -> bool {
        *self == other.text
    }
}

impl<R> std::borrow::Borrow<str> for Checked<R> {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl<R> fmt::Display for Checked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<R> fmt::Debug for Checked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<R: NameRule> std::str::FromStr for Checked<R> {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        Checked::new(text)
    }
}

impl<R: NameRule> TryFrom<String> for Checked<R> {
    type Error = NameError;
    fn try_from(text: String) -> Result<Self, NameError> {
        Checked::new(text)
    }
}

impl<R: NameRule> TryFrom<&str> for Checked<R> {
    type Error = NameError;
    fn try_from(text: &str) -> Result<Self, NameError> {
        Checked::new(text)
    }
}

impl<R> From<Checked<R>> for String {
    fn from(name: Checked<R>) -> String {
        name.text
    }
}

impl<R> serde::Serialize for Checked<R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de, R: NameRule> serde::Deserialize<'de> for Checked<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Checked::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSpaces;
    impl NameRule for NoSpaces {
        const WHAT: &'static str = "word";
        fn problem(text: &str) -> Option<&'static str> {
            text.contains(' ').then_some("it contains a space")
        }
    }
    type Word = Checked<NoSpaces>;

    #[test]
    fn only_what_the_rule_accepts_is_made_or_read_back() {
        let w = Word::new("abc").unwrap();
        assert_eq!(w, "abc");
        assert_eq!(w.len(), 3, "reads as a str");
        assert_eq!(
            Word::new("a b").unwrap_err().to_string(),
            "invalid word \"a b\": it contains a space"
        );
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"abc\"");
        assert_eq!(serde_json::from_str::<Word>("\"abc\"").unwrap(), w);
        assert!(serde_json::from_str::<Word>("\"a b\"").is_err());
    }
}
