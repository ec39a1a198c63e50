//! The resolver as a tetherd service.

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::daemon::{RecordSnapshot, Service, ServiceContext};

#[derive(Default)]
pub struct DnsService {}

impl DnsService {
    pub fn new() -> DnsService {
        DnsService::default()
    }
}

impl Service for DnsService {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn start<'a>(&'a mut self, _ctx: &'a ServiceContext) -> LocalBoxFuture<'a, Result<(), String>> {
        async { Ok(()) }.boxed_local()
    }

    fn on_records_changed<'a>(
        &'a mut self,
        _records: &'a RecordSnapshot,
        _ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        async {}.boxed_local()
    }

    fn needed(&self, records: &RecordSnapshot) -> bool {
        records.records.iter().any(|r| r.dns)
    }

    fn stop<'a>(&'a mut self) -> LocalBoxFuture<'a, ()> {
        async {}.boxed_local()
    }
}
