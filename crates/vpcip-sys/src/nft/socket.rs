//! The netlink socket to nftables: batches, acknowledgements, dumps.

use super::*;

pub(super) fn nft_message(
    family: NetfilterProtoFamily,
    msg: NfTablesMessage,
    flags: u16,
) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(family, 0, 0),
        msg,
    ));
    m.header.flags = NLM_F_REQUEST | flags;
    m
}

pub(super) fn control(msg: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        msg,
    ));
    m.header.flags = NLM_F_REQUEST;
    m
}

pub(super) fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

impl NatTable {
    /// Opens nftables in the current network namespace (see
    /// [`crate::netns::in_netns`] to open it in another).
    pub fn open() -> Result<Self, SysError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(SysError::io("open netlink"))?;
        sock.bind_auto().map_err(SysError::io("bind netlink"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(SysError::io("connect netlink"))?;
        // A batch must reach the kernel as one datagram: split, the kernel refuses it whole (EINVAL).
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::SndBufForce, &(64 << 20))
            .map_err(|e| SysError::Io("SO_SNDBUFFORCE", std::io::Error::from(e)))?;
        sock.set_rx_buf_sz(16usize << 20)
            .map_err(SysError::io("set receive buffer"))?;
        Ok(NatTable { sock, seq: 1 })
    }

    /// Sends `msgs` as one transaction and waits for its outcome: the
    /// batch-end acknowledgement, or the first error (after which the kernel
    /// applies nothing and sends no further acknowledgement).
    pub(super) fn transact(
        &mut self,
        msgs: Vec<NfTablesMessage>,
        flags: u16,
    ) -> Result<(), SysError> {
        self.transact_with(msgs, &[], flags)
    }

    /// One transaction of typed messages followed by map element changes,
    /// the latter encoded by [`encode_elements`] (the typed encoder costs
    /// ~180 ms for 200,000 elements; this one a few).
    pub(super) fn transact_with(
        &mut self,
        msgs: Vec<NfTablesMessage>,
        elems: &[ElementChange<'_>],
        flags: u16,
    ) -> Result<(), SysError> {
        self.transact_in(NetfilterProtoFamily::IPv4, msgs, elems, &[], flags)
    }

    /// Sends one request (not a batch) under the next sequence number.
    pub(super) fn send_one(
        &mut self,
        mut m: NetlinkMessage<NetfilterMessage>,
        what: &'static str,
    ) -> Result<(), SysError> {
        self.seq = self.seq.wrapping_add(1);
        m.header.sequence_number = self.seq;
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(SysError::io(what))?;
        Ok(())
    }

    /// Discards whatever the kernel has queued on the socket.
    pub(super) fn drain(&mut self) {
        if self.sock.set_non_blocking(true).is_err() {
            return;
        }
        let mut buf = vec![0u8; 1 << 16];
        while matches!(self.sock.recv(&mut &mut buf[..], 0), Ok(n) if n > 0) {}
        let _ = self.sock.set_non_blocking(false);
    }

    /// One transaction in a family (`ip`, `bridge`, …).
    pub(crate) fn transact_in(
        &mut self,
        family: NetfilterProtoFamily,
        msgs: Vec<NfTablesMessage>,
        elems: &[ElementChange<'_>],
        keys: &[KeyChange<'_>],
        flags: u16,
    ) -> Result<(), SysError> {
        let mut buf = Vec::new();
        push_message(
            &mut buf,
            &mut control(ControlMessage::BatchBegin),
            &mut self.seq,
        );
        for m in msgs {
            // Rules go after the ones already there, in the order given.
            let f = if matches!(m, NfTablesMessage::NewRule(_)) {
                flags | NLM_F_APPEND
            } else {
                flags
            };
            push_message(&mut buf, &mut nft_message(family, m, f), &mut self.seq);
        }
        for e in elems {
            encode_elements(&mut buf, &mut self.seq, e, flags);
        }
        for k in keys {
            encode_keys(&mut buf, &mut self.seq, k, flags);
        }
        let mut end = control(ControlMessage::BatchEnd);
        end.header.flags |= NLM_F_ACK;
        push_message(&mut buf, &mut end, &mut self.seq);
        let end_seq = self.seq;
        self.sock
            .send(&buf, 0)
            .map_err(SysError::io("send nftables batch"))?;
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(SysError::io("receive nftables reply"))?;
            for (seq, err) in acks(&data)? {
                if err != 0 {
                    // Other messages of the batch may have failed too: their
                    // errors are queued already (the batch is processed
                    // within the send); drop them so that the next request
                    // does not read them as its answer.
                    self.drain();
                    return Err(SysError::Kernel {
                        what: "nftables transaction",
                        errno: -err,
                    });
                }
                if seq == end_seq {
                    return Ok(());
                }
            }
        }
    }

    /// Whether a set (or map) exists: one question about the set itself,
    /// not a dump of its elements.
    pub fn has_set(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
    ) -> Result<bool, SysError> {
        Ok(self.set_flags(family, table, set)?.is_some())
    }

    /// The flags of `table`'s set `set` (NFT_SET_*), None when it is not
    /// there.
    pub fn set_flags(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
    ) -> Result<Option<u32>, SysError> {
        Ok(self.set_info(family, table, set)?.map(|(flags, _)| flags))
    }

    /// The flags and the size given at its making (0: none) of `table`'s
    /// set `set`, None when it is not there.
    pub fn set_info(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
    ) -> Result<Option<(u32, u32)>, SysError> {
        const NFTA_SET_FLAGS: u16 = 3;
        const NFTA_SET_DESC: u16 = 9;
        const NFTA_SET_DESC_SIZE: u16 = 1;
        let be32 = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes);
        let m = nft_message(
            family,
            NfTablesMessage::GetSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(table.into()),
                    SetAttribute::Name(set.into()),
                ],
            }),
            NLM_F_ACK,
        );
        let mut info = None;
        let errno = self.request(m, |_, payload| {
            let (mut f, mut size) = (0, 0);
            for (t, v) in attrs(payload.get(4..).unwrap_or_default()) {
                match t {
                    NFTA_SET_FLAGS => f = be32(v).unwrap_or(0),
                    NFTA_SET_DESC => {
                        size = attrs(v)
                            .find(|(t, _)| *t == NFTA_SET_DESC_SIZE)
                            .and_then(|(_, v)| be32(v))
                            .unwrap_or(0);
                    }
                    _ => {}
                }
            }
            info = Some((f, size));
        })?;
        match errno {
            0 => Ok(info),
            2 => Ok(None), // ENOENT: no such table or set
            errno => Err(SysError::Kernel {
                what: "nftables set lookup",
                errno,
            }),
        }
    }

    /// Sends one request (asking for an acknowledgement) and gives each
    /// message of the answer — its type and payload — to `each`, until the
    /// acknowledgement; returns the errno the kernel answered (0: done).
    fn request(
        &mut self,
        m: NetlinkMessage<NetfilterMessage>,
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<i32, SysError> {
        self.send_one(m, "send nftables request")?;
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(SysError::io("receive nftables reply"))?;
            for Received { ty, payload, .. } in messages(&data)? {
                if ty == 2 {
                    // NLMSG_ERROR: an acknowledgement, or a refusal.
                    return Ok(-u32_at(payload, 0).unwrap_or(0).cast_signed());
                }
                each(ty, payload);
            }
        }
    }

    /// The namespace's nftables generation: it changes with every
    /// transaction (anyone's), so an unchanged generation means an unchanged
    /// ruleset. (Counters are not part of it.)
    pub fn generation(&mut self) -> Result<u32, SysError> {
        const NFT_MSG_NEWGEN: u16 = 15;
        let m = nft_message(
            NetfilterProtoFamily::Unspec,
            NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            NLM_F_ACK,
        );
        let mut gen_id = None;
        let errno = self.request(m, |ty, payload| {
            if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
                gen_id = attrs(payload.get(4..).unwrap_or_default())
                    .find(|(t, _)| *t == 1) // NFTA_GEN_ID
                    .and_then(|(_, v)| <[u8; 4]>::try_from(v).ok())
                    .map(u32::from_be_bytes);
            }
        })?;
        if errno != 0 {
            return Err(SysError::Kernel {
                what: "nftables generation",
                errno,
            });
        }
        gen_id.ok_or(SysError::Parse("no generation in the answer"))
    }

    /// One dump of a set or map, each element's key, data and whole
    /// attribute stream given to `each`; false when the kernel says it was
    /// interrupted.
    pub(crate) fn dump_set(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
        mut each: impl FnMut(&[u8], Option<&[u8]>, &[u8]),
    ) -> Result<bool, SysError> {
        let m = nft_message(
            family,
            NfTablesMessage::GetSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.into()),
                    SetElementList::Set(set.into()),
                ],
            }),
            NLM_F_DUMP,
        );
        self.send_one(m, "send nftables dump")?;
        let mut interrupted = false;
        loop {
            let data = recv_dump(&self.sock, "receive nftables dump")?;
            match parse_elements(&data, &mut interrupted, &mut each)? {
                DumpState::More => continue,
                DumpState::Done => return Ok(true),
                DumpState::Interrupted => return Ok(false),
            }
        }
    }
}

/// One message of a dump, received into a 64 KB buffer. The kernel sizes
/// each dump message by the largest buffer the socket has received into
/// (up to 32 KB); `recv_from_full`'s buffers are exactly as large as the
/// message before, so a dump stayed at one page per message, and an
/// nftables set dump, which walks the set again from its start for every
/// message, took 33 s for 100,000 elements instead of about one.
pub(crate) fn recv_dump(sock: &Socket, what: &'static str) -> Result<Vec<u8>, SysError> {
    let mut buf = Vec::with_capacity(64 << 10);
    sock.recv_from(&mut buf, 0).map_err(SysError::io(what))?;
    Ok(buf)
}

impl NatTable {
    /// The names of `table`'s chains (none when the table is missing).
    pub(crate) fn chain_names(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
    ) -> Result<std::collections::BTreeSet<String>, SysError> {
        let get = NfTablesMessage::GetChain(ChainMessage {
            attributes: vec![ChainAttribute::Table(table.into())],
        });
        // NFT_MSG_NEWCHAIN; NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME.
        self.names_in(family, table, get, 3, (1, 3))
    }

    /// The names of `table`'s sets and maps.
    pub(crate) fn set_names(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
    ) -> Result<std::collections::BTreeSet<String>, SysError> {
        let get = NfTablesMessage::GetSet(SetMessage {
            attributes: vec![SetAttribute::Table(table.into())],
        });
        // NFT_MSG_NEWSET; NFTA_SET_TABLE, NFTA_SET_NAME.
        self.names_in(family, table, get, 9, (1, 2))
    }

    /// One dump of chains or sets: the names of those of `table`.
    fn names_in(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        get: NfTablesMessage,
        answer: u16,
        (table_attr, name_attr): (u16, u16),
    ) -> Result<std::collections::BTreeSet<String>, SysError> {
        self.send_one(nft_message(family, get, NLM_F_DUMP), "send nftables dump")?;
        let mut out = std::collections::BTreeSet::new();
        let text = |v: &[u8]| {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        };
        loop {
            let data = recv_dump(&self.sock, "receive nftables dump")?;
            for Received { ty, payload, .. } in messages(&data)? {
                match ty {
                    3 => return Ok(out), // NLMSG_DONE
                    2 => {
                        let err = u32_at(payload, 0).unwrap_or(0).cast_signed();
                        return match -err {
                            0 | 2 => Ok(out),
                            errno => Err(SysError::Kernel {
                                what: "nftables dump",
                                errno,
                            }),
                        };
                    }
                    t if t == (NFNL_SUBSYS_NFTABLES << 8) | answer => {
                        let mut of_table = false;
                        let mut name = None;
                        for (t, v) in attrs(payload.get(4..).unwrap_or_default()) {
                            if t == table_attr {
                                of_table = text(v) == table;
                            } else if t == name_attr {
                                name = Some(text(v));
                            }
                        }
                        if let (true, Some(n)) = (of_table, name) {
                            out.insert(n);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
