//! What every plugin's CHECK shares: the previous result it verifies against, and the error it answers when
//! kernel state differs from it.

use crate::cni::plugin::Call;
use crate::cni::result::CniResult;
use crate::error::Error;

/// CHECK verifies what the last ADD returned, so prevResult is required (CNI spec §"CHECK").
pub fn prev_result(call: &Call) -> Result<CniResult, Error> {
    call.prev_result()?
        .ok_or_else(|| Error::config("CHECK needs prevResult in the network config"))
}

/// The CHECK failure for a difference between the kernel and prevResult.
pub fn mismatch(msg: String) -> Error {
    Error::check_mismatch(msg)
}
