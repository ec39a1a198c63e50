pub mod cni;
pub mod link;
pub mod netns;
