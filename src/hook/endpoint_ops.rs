//! The two endpoint operations the hook uses, as a trait so the attach-all-or-nothing and detach logic
//! is tested without root or a kernel.

use crate::endpoint::{AttachRequest, Attachment, EndpointError, Endpoints};

pub trait EndpointOps {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError>;
    fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError>;
}

impl EndpointOps for Endpoints {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError> {
        Endpoints::attach(self, request)
    }

    fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError> {
        Endpoints::detach(self, network, container_id, ifname)
    }
}
