//! Numbers from the kernel's uapi headers (linux/netlink.h, linux/netfilter/nfnetlink.h,
//! linux/netfilter/nf_tables.h), written out for the few messages tether sends.

// linux/netlink.h
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
/// NLM_F_ROOT | NLM_F_MATCH.
pub const NLM_F_DUMP: u16 = 0x300;
/// With NEWSETELEM: fail with EEXIST when the key is present.
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_HDRLEN: usize = 4;

// linux/netfilter/nfnetlink.h
pub const NFGENMSG_LEN: usize = 4;
pub const NFNETLINK_V0: u8 = 0;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// NLMSG_MIN_TYPE and NLMSG_MIN_TYPE + 1: the batch envelope.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;

// linux/netfilter.h
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_BRIDGE: u8 = 7;

// enum nf_tables_msg_types
pub const NFT_MSG_GETCHAIN: u8 = 4;
pub const NFT_MSG_NEWSETELEM: u8 = 12;
pub const NFT_MSG_GETSETELEM: u8 = 13;
pub const NFT_MSG_DELSETELEM: u8 = 14;
/// Like DELSETELEM but succeeds when the element is absent (kernel 6.3 and later).
pub const NFT_MSG_DESTROYSETELEM: u8 = 30;

// enum nft_chain_attributes
pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_CHAIN_HOOK: u16 = 4;
pub const NFTA_CHAIN_POLICY: u16 = 5;
pub const NFTA_CHAIN_USERDATA: u16 = 12;
// enum nft_hook_attributes
pub const NFTA_HOOK_HOOKNUM: u16 = 1;
/// NF_INET_FORWARD in enum nf_inet_hooks.
pub const NF_INET_FORWARD: u32 = 2;
/// NF_DROP: a base chain policy.
pub const NF_DROP: u32 = 0;

// enum nft_set_elem_list_attributes
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;

// enum nft_list_attributes
pub const NFTA_LIST_ELEM: u16 = 1;

// enum nft_set_elem_attributes
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_DATA: u16 = 2;

// enum nft_data_attributes
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;

// enum nft_verdict_attributes
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;

/// enum nft_verdicts: NFT_JUMP, sent as a big-endian u32.
pub const NFT_JUMP: i32 = -3;

/// libnftnl's udata TLV type for a chain comment (NFTNL_UDATA_CHAIN_COMMENT), as written by nft.
pub const NFTNL_UDATA_CHAIN_COMMENT: u8 = 0;

/// Message type of an nf_tables message: subsystem in the high byte.
pub const fn nft_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg as u16
}

pub const NFT_MSG_DELTABLE: u8 = 2;
pub const NFT_MSG_GETGEN: u8 = 16;
// enum nft_table_attributes
pub const NFTA_TABLE_NAME: u16 = 1;
// enum nft_gen_attributes
pub const NFTA_GEN_ID: u16 = 1;
/// enum nfnl_batch_attributes: the batch is refused (ERESTART) if the ruleset generation
/// moved past this one.
pub const NFNL_BATCH_GENID: u16 = 1;

// The rule messages (see `ruleset`).
pub const NFPROTO_IPV4: u8 = 2;
pub const NFT_MSG_NEWTABLE: u8 = 0;
pub const NFT_MSG_NEWCHAIN: u8 = 3;
pub const NFT_MSG_NEWRULE: u8 = 6;
/// With NEWRULE: append at the end of the chain.
pub const NLM_F_APPEND: u16 = 0x800;
pub const NFTA_CHAIN_TYPE: u16 = 7;
pub const NFTA_HOOK_PRIORITY: u16 = 2;
/// NF_INET_LOCAL_OUT in enum nf_inet_hooks.
pub const NF_INET_LOCAL_OUT: u32 = 3;
pub const NF_ACCEPT: u32 = 1;
// enum nft_rule_attributes
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
// enum nft_expr_attributes
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;
// enum nft_meta_attributes, enum nft_meta_keys
pub const NFTA_META_DREG: u16 = 1;
pub const NFTA_META_KEY: u16 = 2;
pub const NFT_META_L4PROTO: u32 = 16;
// enum nft_payload_attributes, enum nft_payload_bases
pub const NFTA_PAYLOAD_DREG: u16 = 1;
pub const NFTA_PAYLOAD_BASE: u16 = 2;
pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub const NFTA_PAYLOAD_LEN: u16 = 4;
pub const NFTA_PAYLOAD_SREG: u16 = 5;
pub const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
pub const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
pub const NFT_PAYLOAD_CSUM_INET: u32 = 1;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
// enum nft_cmp_attributes, enum nft_cmp_ops
pub const NFTA_CMP_SREG: u16 = 1;
pub const NFTA_CMP_OP: u16 = 2;
pub const NFTA_CMP_DATA: u16 = 3;
pub const NFT_CMP_EQ: u32 = 0;
// enum nft_immediate_attributes
pub const NFTA_IMMEDIATE_DREG: u16 = 1;
pub const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_nat_attributes, enum nft_nat_types
pub const NFTA_NAT_TYPE: u16 = 1;
pub const NFTA_NAT_FAMILY: u16 = 2;
pub const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
pub const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
pub const NFT_NAT_DNAT: u32 = 1;

// The per-network ruleset (see `ruleset`): chains, sets and the expressions of its rules.
pub const NFPROTO_IPV6: u8 = 10;
pub const NFT_MSG_DELCHAIN: u8 = 5;
pub const NFT_MSG_DELRULE: u8 = 8;
pub const NFT_MSG_NEWSET: u8 = 9;
pub const NFT_MSG_DELSET: u8 = 11;
/// NF_INET_PRE_ROUTING (also NF_BR_PRE_ROUTING) and NF_INET_POST_ROUTING.
pub const NF_INET_PRE_ROUTING: u32 = 0;
pub const NF_INET_POST_ROUTING: u32 = 4;
// enum nft_set_attributes, enum nft_set_flags
pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_SET_FLAGS: u16 = 3;
pub const NFTA_SET_KEY_TYPE: u16 = 4;
pub const NFTA_SET_KEY_LEN: u16 = 5;
pub const NFTA_SET_DATA_TYPE: u16 = 6;
pub const NFTA_SET_DATA_LEN: u16 = 7;
pub const NFTA_SET_ID: u16 = 10;
pub const NFTA_SET_USERDATA: u16 = 13;
/// libnftnl's udata TLV type for a set's key byte order.
pub const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
pub const NFT_SET_MAP: u32 = 0x8;
/// enum nft_data_types: a verdict map's data.
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// NFT_REG_VERDICT and the first 32-bit register (NFT_REG32_00, the first word of NFT_REG_1).
pub const NFT_REG_VERDICT: u32 = 0;
pub const NFT_REG32_00: u32 = 8;
// enum nft_meta_attributes, enum nft_meta_keys
pub const NFTA_META_SREG: u16 = 3;
pub const NFT_META_MARK: u32 = 3;
pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_META_OIFNAME: u32 = 7;
pub const NFT_META_NFPROTO: u32 = 15;
pub const NFT_META_SECPATH: u32 = 25;
/// NF_INET_LOCAL_IN in enum nf_inet_hooks.
pub const NF_INET_LOCAL_IN: u32 = 1;
// enum nft_ct_attributes, enum nft_ct_keys
pub const NFTA_CT_DREG: u16 = 1;
pub const NFTA_CT_KEY: u16 = 2;
pub const NFT_CT_STATE: u32 = 0;
pub const NFT_CT_STATUS: u32 = 2;
pub const NFTA_CT_SREG: u16 = 4;
pub const NFT_CT_DIRECTION: u32 = 1;
pub const NFT_CT_MARK: u32 = 3;
// enum nft_bitwise_attributes
pub const NFTA_BITWISE_SREG: u16 = 1;
pub const NFTA_BITWISE_DREG: u16 = 2;
pub const NFTA_BITWISE_LEN: u16 = 3;
pub const NFTA_BITWISE_MASK: u16 = 4;
pub const NFTA_BITWISE_XOR: u16 = 5;
pub const NFT_CMP_NEQ: u32 = 1;
// enum nft_lookup_attributes, enum nft_lookup_flags
pub const NFTA_LOOKUP_SET: u16 = 1;
pub const NFTA_LOOKUP_SREG: u16 = 2;
pub const NFTA_LOOKUP_DREG: u16 = 3;
pub const NFTA_LOOKUP_FLAGS: u16 = 5;
pub const NFT_LOOKUP_F_INV: u32 = 1;
// enum nft_fib_attributes, enum nft_fib_result, enum nft_fib_flags
pub const NFTA_FIB_DREG: u16 = 1;
pub const NFTA_FIB_RESULT: u16 = 2;
pub const NFTA_FIB_FLAGS: u16 = 3;
pub const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// RTN_LOCAL in linux/rtnetlink.h: what `fib daddr type local` compares with.
pub const RTN_LOCAL: u32 = 2;
pub const NFT_PAYLOAD_LL_HEADER: u32 = 0;

// enum nft_ng_attributes, enum nft_ng_types
pub const NFTA_NG_DREG: u16 = 1;
pub const NFTA_NG_MODULUS: u16 = 2;
pub const NFTA_NG_TYPE: u16 = 3;
pub const NFT_NG_RANDOM: u32 = 1;
// enum nft_hash_attributes, enum nft_hash_types
pub const NFTA_HASH_SREG: u16 = 1;
pub const NFTA_HASH_DREG: u16 = 2;
pub const NFTA_HASH_LEN: u16 = 3;
pub const NFTA_HASH_MODULUS: u16 = 4;
pub const NFTA_HASH_SEED: u16 = 5;
pub const NFTA_HASH_TYPE: u16 = 7;
pub const NFT_HASH_JENKINS: u32 = 0;
// enum nft_reject_attributes, enum nft_reject_types, enum nft_reject_inet_code
pub const NFTA_REJECT_TYPE: u16 = 1;
pub const NFTA_REJECT_ICMP_CODE: u16 = 2;
pub const NFT_REJECT_TCP_RST: u32 = 1;
pub const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
pub const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;

// linux/netfilter/nfnetlink_conntrack.h
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;
pub const CTA_PROTO_NUM: u16 = 1;
/// CTA_PROTO_DST_PORT in enum ctattr_l4proto (network byte order).
pub const CTA_PROTO_DST_PORT: u16 = 3;

// Per-element counters: enum nft_set_elem_attributes, enum nft_counter_attributes.
pub const NFTA_SET_ELEM_EXPR: u16 = 7;
pub const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
pub const NFTA_COUNTER_BYTES: u16 = 1;
pub const NFTA_COUNTER_PACKETS: u16 = 2;
