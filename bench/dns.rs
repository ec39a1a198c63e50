//! The embedded resolver beside aardvark-dns (filled in below).
fn main() {}
