//! The control protocol on `<run_dir>/tetherd.sock`: one JSON object per line each way. Plugins send
//! `changed` after writing or removing a record; `status` and `stop` are for people and tests.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Records changed: with `attachment`, only that record of `network` (re-read, or dropped when its
    /// file is gone); otherwise re-read every record.
    Changed {
        #[serde(default)]
        network: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<AttachmentKey>,
    },
    Status,
    Stop,
    /// Keep the nf_tables socket this request carries (`SCM_RIGHTS`) until containers stop coming and going:
    /// from plugins that notify nothing else (tether-portmap).
    Park,
    /// A command for one service, e.g. the overlay's `{"cluster": "status"}` (`tether cluster`); the answer
    /// comes back in `status`.
    Service {
        service: String,
        command: serde_json::Value,
    },
}

/// One attachment: the record file `<network>/<containerId>.<ifname>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    /// tetherd kept the nf_tables socket the request carried (`SCM_RIGHTS`); an older tetherd never says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            ..Reply::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op() {
        let r: Request = serde_json::from_str(r#"{"op":"changed","network":"n1"}"#).unwrap();
        assert_eq!(
            r,
            Request::Changed {
                network: Some("n1".into()),
                attachment: None,
            }
        );
        let r: Request = serde_json::from_str(
            r#"{"op":"changed","network":"n","attachment":{"containerId":"c","ifname":"eth0"}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::Changed { attachment: Some(a), .. } if a.container_id == "c"));
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
    }
}
