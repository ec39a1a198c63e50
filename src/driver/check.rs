//! What every plugin's CHECK shares: the previous result it verifies against, and the error it answers when
//! kernel state differs from it.

use crate::cni::error::{CniError, ErrorCode};
use crate::cni::plugin::Call;
use crate::cni::result::CniResult;

/// Plugin-specific error code (spec: codes from 100 up are the plugin's own): kernel state differs from
/// prevResult on CHECK. The same in every tether plugin.
pub const CODE_CHECK_MISMATCH: u32 = 100;

/// CHECK verifies what the last ADD returned, so prevResult is required (CNI spec §"CHECK").
pub fn prev_result(call: &Call) -> Result<CniResult, CniError> {
    call.prev_result()?.ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidConfig,
            "CHECK needs prevResult in the network config",
        )
    })
}

/// The CHECK failure for a difference between the kernel and prevResult.
pub fn mismatch(msg: String) -> CniError {
    CniError {
        code: CODE_CHECK_MISMATCH,
        msg,
        details: String::new(),
    }
}
