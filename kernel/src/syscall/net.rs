//! Socket calls: `socket`, `socketpair`, `bind`, `listen`, `accept4`, `connect`, the send and
//! receive families, `shutdown`, names and options. This layer decodes what user space
//! passes (socket addresses, `msghdr`, `SCM_RIGHTS` control messages, option values) with
//! Linux's sizes and errors, and leaves the semantics to `net::socket`.

use alloc::{string::String, sync::Arc, vec, vec::Vec};
use core::{net::Ipv4Addr, sync::atomic::Ordering};

use hal::user::{self, UserPtr};
use linux_raw_sys::{errno as e, general as g, net as n};

use super::{MAX_IO, SysResult, read_user};
use crate::{
    fs::{
        self, Node,
        file::{OpenFile, Target},
    },
    net::socket::{
        Address, Flags, Socket, Type,
        unix::{Name, Paths},
    },
    process::Current,
    signal,
};

/// `SOCK_NONBLOCK` and `SOCK_CLOEXEC` (the `O_*` bits, as Linux defines them).
const SOCK_FLAGS: u32 = g::O_NONBLOCK | g::O_CLOEXEC;
/// `sizeof(struct sockaddr_un)`.
const SUN_LEN: usize = 110;
/// The most descriptors one `SCM_RIGHTS` message carries (Linux's `SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;
const MSG_PEEK: u32 = 0x2;
const MSG_CTRUNC: u32 = 0x8;
const MSG_TRUNC: u32 = 0x20;
const MSG_DONTWAIT: u32 = 0x40;
const MSG_WAITALL: u32 = 0x100;
const MSG_NOSIGNAL: u32 = 0x4000;
const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;
const SCM_RIGHTS: u32 = 1;
const IPPROTO_TCP: u32 = n::IPPROTO_TCP as u32;
const IPPROTO_UDP: u32 = n::IPPROTO_UDP as u32;

fn socket_of(current: &Current, fd: u64) -> Result<(Arc<OpenFile>, Arc<Socket>), u32> {
    let file = current.process().fds().lock().get(fd)?;
    match &file.target {
        Target::Socket(s) => {
            let s = Arc::clone(s);
            Ok((file, s))
        }
        _ => Err(e::ENOTSOCK),
    }
}

/// Installs `socket` as a new descriptor with `flags` (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`).
fn install(current: &Current, socket: Arc<Socket>, flags: u32) -> SysResult {
    let path = socket.describe();
    let file = OpenFile::new(
        Target::Socket(socket),
        g::O_RDWR | (flags & g::O_NONBLOCK),
        path,
    );
    current
        .process()
        .fds()
        .lock()
        .insert(file, flags & g::O_CLOEXEC != 0)
}

/// The type and flags in `socket`'s second argument.
fn split_type(raw: u64) -> Result<(Type, u32), u32> {
    let raw = raw as u32;
    let flags = raw & SOCK_FLAGS;
    let ty = match raw & !SOCK_FLAGS {
        n::SOCK_STREAM => Type::Stream,
        n::SOCK_DGRAM => Type::Datagram,
        n::SOCK_SEQPACKET | n::SOCK_RAW | n::SOCK_RDM => return Err(e::ESOCKTNOSUPPORT),
        _ => return Err(e::EINVAL),
    };
    Ok((ty, flags))
}

/// `socket(domain, type, protocol)`.
pub fn socket(current: &Current, domain: u64, ty: u64, protocol: u64) -> SysResult {
    let (ty, flags) = split_type(ty)?;
    let socket = match domain as u32 {
        n::AF_UNIX => {
            if protocol != 0 && protocol != u64::from(n::AF_UNIX) {
                return Err(e::EPROTONOSUPPORT);
            }
            Socket::new_unix(ty)
        }
        n::AF_INET => {
            let expected = match ty {
                Type::Stream => IPPROTO_TCP,
                Type::Datagram => IPPROTO_UDP,
            };
            if protocol != 0 && protocol != u64::from(expected) {
                return Err(e::EPROTONOSUPPORT);
            }
            Socket::new_inet(ty)
        }
        _ => return Err(e::EAFNOSUPPORT),
    };
    install(current, socket, flags)
}

/// `socketpair(domain, type, protocol, sv)`: `AF_UNIX` only, as Linux.
pub fn socketpair(current: &Current, domain: u64, ty: u64, protocol: u64, sv: u64) -> SysResult {
    let (ty, flags) = split_type(ty)?;
    match domain as u32 {
        n::AF_UNIX => {}
        n::AF_INET => return Err(e::EOPNOTSUPP),
        _ => return Err(e::EAFNOSUPPORT),
    }
    if protocol != 0 && protocol != u64::from(n::AF_UNIX) {
        return Err(e::EPROTONOSUPPORT);
    }
    // Fail on a bad pointer before any descriptor exists.
    UserPtr::<[i32; 2]>::new(sv).read().map_err(|_| e::EFAULT)?;
    let (a, b) = Socket::unix_pair(ty);
    let fa = install(current, a, flags)?;
    let fb = match install(current, b, flags) {
        Ok(fd) => fd,
        Err(err) => {
            let _ = current.process().fds().lock().remove(fa);
            return Err(err);
        }
    };
    if UserPtr::<[i32; 2]>::new(sv)
        .write([fa as i32, fb as i32])
        .is_err()
    {
        let fds = current.process().fds();
        let mut fds = fds.lock();
        let _ = fds.remove(fa);
        let _ = fds.remove(fb);
        return Err(e::EFAULT);
    }
    Ok(0)
}

/// Decodes a socket address of `len` bytes at `address` for a socket of `domain`.
fn read_address(domain: u32, address: u64, len: u64) -> Result<Address, u32> {
    let len = len as u32 as i32;
    if len < 0 || len as usize > 128 {
        return Err(e::EINVAL);
    }
    let len = len as usize;
    if len < 2 {
        return Err(e::EINVAL);
    }
    let raw = read_user(address, len as u64)?;
    let family = u32::from(u16::from_ne_bytes([raw[0], raw[1]]));
    match (domain, family) {
        (_, n::AF_UNSPEC) => Ok(Address::Unspecified),
        (n::AF_UNIX, n::AF_UNIX) => {
            if len > SUN_LEN {
                return Err(e::EINVAL);
            }
            let bytes = &raw[2..];
            Ok(Address::Unix(match bytes.first() {
                None => Name::Unnamed,
                Some(0) => Name::Abstract(bytes[1..].to_vec()),
                Some(_) => {
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    Name::Path(String::from_utf8(bytes[..end].to_vec()).map_err(|_| e::ENOENT)?)
                }
            }))
        }
        (n::AF_INET, n::AF_INET) => {
            if len < 16 {
                return Err(e::EINVAL);
            }
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
            Ok(Address::Inet(ip, port))
        }
        (n::AF_UNIX, _) => Err(e::EINVAL),
        _ => Err(e::EAFNOSUPPORT),
    }
}

/// Encodes `address` as a `sockaddr`.
fn encode_address(address: &Address) -> Vec<u8> {
    match address {
        Address::Unspecified => vec![0, 0],
        Address::Unix(name) => {
            let mut out = (n::AF_UNIX as u16).to_ne_bytes().to_vec();
            match name {
                Name::Unnamed => {}
                Name::Path(path) => {
                    out.extend_from_slice(path.as_bytes());
                    out.push(0);
                }
                Name::Abstract(bytes) => {
                    out.push(0);
                    out.extend_from_slice(bytes);
                }
            }
            out
        }
        Address::Inet(ip, port) => {
            let mut out = vec![0u8; 16];
            out[..2].copy_from_slice(&(n::AF_INET as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&port.to_be_bytes());
            out[4..8].copy_from_slice(&ip.octets());
            out
        }
    }
}

/// Writes `address` to a user buffer whose size `*len_ptr` gives (truncating), then the
/// full size to `*len_ptr`.
fn write_address(address: &Address, buf: u64, len_ptr: u64) -> Result<(), u32> {
    if buf == 0 || len_ptr == 0 {
        return Ok(());
    }
    let room = UserPtr::<i32>::new(len_ptr).read().map_err(|_| e::EFAULT)?;
    if room < 0 {
        return Err(e::EINVAL);
    }
    let bytes = encode_address(address);
    let n = bytes.len().min(room as usize);
    user::copy_to_user(buf, &bytes[..n]).map_err(|_| e::EFAULT)?;
    UserPtr::<i32>::new(len_ptr)
        .write(bytes.len() as i32)
        .map_err(|_| e::EFAULT)
}

/// Runs `f` with the file system reachable the way the caller's paths resolve.
fn with_paths<T>(current: &Current, f: impl FnOnce(&Paths) -> T) -> T {
    let umask = current.process().umask.load(Ordering::Relaxed);
    let create = |path: &str| -> Result<Arc<Node>, u32> {
        let start = if path.starts_with('/') {
            fs::root()
        } else {
            Arc::clone(&current.process().cwd.lock().node)
        };
        let (dir, name) = fs::lookup_parent_as(Some(super::fs::who(current)), &start, path)?;
        if dir.child(name).is_ok() {
            return Err(e::EADDRINUSE);
        }
        let node = Node::new_socket(0o777 & !umask);
        dir.link(name, Arc::clone(&node))?;
        Ok(node)
    };
    let find = |path: &str| super::fs::resolve_path(current, path, true);
    f(&Paths {
        create: &create,
        find: &find,
    })
}

/// An automatic abstract name for a `bind` with no name: five hex digits, as Linux.
fn autobind_name() -> Name {
    let r = super::random_bytes::<4>();
    let n = u32::from_ne_bytes(r) & 0xfffff;
    Name::Abstract(alloc::format!("{n:05x}").into_bytes())
}

/// `bind(fd, addr, len)`.
pub fn bind(current: &Current, fd: u64, addr: u64, len: u64) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    let address = match read_address(socket.domain(), addr, len)? {
        Address::Unix(Name::Unnamed) => Address::Unix(autobind_name()),
        Address::Unspecified if socket.domain() == n::AF_INET => {
            return Err(e::EAFNOSUPPORT);
        }
        other => other,
    };
    with_paths(current, |paths| socket.bind(paths, address)).map(|()| 0)
}

/// `listen(fd, backlog)`.
pub fn listen(current: &Current, fd: u64, backlog: u64) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    socket.listen(backlog as i32).map(|()| 0)
}

/// `accept4(fd, addr, len, flags)` (and `accept`).
pub fn accept4(current: &Current, fd: u64, addr: u64, len: u64, flags: u64) -> SysResult {
    if flags & !u64::from(SOCK_FLAGS) != 0 {
        return Err(e::EINVAL);
    }
    let (file, socket) = socket_of(current, fd)?;
    let (new, peer) = socket
        .accept(&current.task, file.nonblock())
        .map_err(restart)?;
    write_address(&peer, addr, len)?;
    install(current, new, flags as u32)
}

/// `connect(fd, addr, len)`.
pub fn connect(current: &Current, fd: u64, addr: u64, len: u64) -> SysResult {
    let (file, socket) = socket_of(current, fd)?;
    let address = read_address(socket.domain(), addr, len)?;
    with_paths(current, |paths| {
        socket.connect(&current.task, paths, address, file.nonblock())
    })
    .map(|()| 0)
}

/// An interrupted wait: restarted or `EINTR`, as signal delivery decides.
fn restart(errno: u32) -> u32 {
    if errno == e::EINTR {
        signal::ERESTARTSYS
    } else {
        errno
    }
}

fn call_flags(file: &OpenFile, flags: u32) -> Flags {
    Flags {
        nonblock: file.nonblock() || flags & MSG_DONTWAIT != 0,
        peek: flags & MSG_PEEK != 0,
        waitall: flags & MSG_WAITALL != 0,
    }
}

/// Sends `data` with `rights`; `EPIPE` raises `SIGPIPE` unless `MSG_NOSIGNAL`.
fn send_common(
    current: &Current,
    fd: u64,
    data: &[u8],
    to: Option<(u64, u64)>,
    rights: Vec<Arc<OpenFile>>,
    flags: u32,
) -> SysResult {
    let (file, socket) = socket_of(current, fd)?;
    let to = match to {
        Some((addr, len)) if addr != 0 => Some(read_address(socket.domain(), addr, len)?),
        _ => None,
    };
    let result = with_paths(current, |paths| {
        socket.send(
            &current.task,
            paths,
            data,
            to,
            rights,
            call_flags(&file, flags),
        )
    });
    match result {
        Ok(n) => Ok(n as u64),
        Err(errno) if errno == e::EPIPE => {
            if flags & MSG_NOSIGNAL == 0 {
                signal::send_thread(&current.thread, signal::SIGPIPE);
            }
            Err(e::EPIPE)
        }
        Err(errno) => Err(restart(errno)),
    }
}

/// `sendto(fd, buf, len, flags, addr, addrlen)` (and `send`).
pub fn sendto(current: &Current, a: [u64; 6]) -> SysResult {
    let data = read_user(a[1], a[2])?;
    send_common(
        current,
        a[0],
        &data,
        Some((a[4], a[5])),
        Vec::new(),
        a[3] as u32,
    )
}

/// `recvfrom(fd, buf, len, flags, addr, addrlen)` (and `recv`).
pub fn recvfrom(current: &Current, a: [u64; 6]) -> SysResult {
    let (file, socket) = socket_of(current, a[0])?;
    let flags = a[3] as u32;
    let mut data = vec![0u8; (a[2] as usize).min(MAX_IO)];
    let got = socket
        .recv(&current.task, &mut data, call_flags(&file, flags))
        .map_err(restart)?;
    user::copy_to_user(a[1], &data[..got.len]).map_err(|_| e::EFAULT)?;
    if let Some(from) = &got.from {
        write_address(from, a[4], a[5])?;
    } else if a[5] != 0 {
        UserPtr::<i32>::new(a[5]).write(0).map_err(|_| e::EFAULT)?;
    }
    let reported = if flags & MSG_TRUNC != 0 && socket.ty == Type::Datagram {
        got.full_len
    } else {
        got.len
    };
    Ok(reported as u64)
}

/// A `struct msghdr`: name, namelen, iov, iovlen, control, controllen, flags.
fn read_msghdr(msg: u64) -> Result<[u64; 7], u32> {
    UserPtr::<[u64; 7]>::new(msg).read().map_err(|_| e::EFAULT)
}

/// The `iovec` array: (base, len) pairs, `EINVAL` past `UIO_MAXIOV` or a total past
/// `isize::MAX`.
fn read_iovecs(iov: u64, count: u64) -> Result<Vec<(u64, u64)>, u32> {
    if count > 1024 {
        return Err(e::EMSGSIZE);
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut total: u64 = 0;
    for i in 0..count as usize {
        let [base, len] = UserPtr::<[u64; 2]>::new(iov)
            .offset(i)
            .and_then(UserPtr::read)
            .map_err(|_| e::EFAULT)?;
        if len as i64 <= -1 {
            return Err(e::EINVAL);
        }
        total = total.checked_add(len).ok_or(e::EINVAL)?;
        out.push((base, len));
    }
    if total > isize::MAX as u64 {
        return Err(e::EINVAL);
    }
    Ok(out)
}

/// The open files a control buffer's `SCM_RIGHTS` messages name.
fn read_rights(current: &Current, control: u64, len: u64) -> Result<Vec<Arc<OpenFile>>, u32> {
    let mut rights = Vec::new();
    if control == 0 || len == 0 {
        return Ok(rights);
    }
    let buf = read_user(control, len.min(64 * 1024))?;
    let mut at = 0;
    while at + 16 <= buf.len() {
        let cmsg_len = u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes")) as usize;
        let level = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
        let ty = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().expect("4 bytes"));
        if cmsg_len < 16 || at + cmsg_len > buf.len() {
            return Err(e::EINVAL);
        }
        if level != n::SOL_SOCKET || ty != SCM_RIGHTS {
            return Err(e::EINVAL);
        }
        let data = &buf[at + 16..at + cmsg_len];
        let fds = current.process().fds();
        let fds = fds.lock();
        for chunk in data.chunks_exact(4) {
            let fd = i32::from_ne_bytes(chunk.try_into().expect("4 bytes"));
            if fd < 0 {
                return Err(e::EBADF);
            }
            rights.push(fds.get(fd as u64)?);
        }
        drop(fds);
        if rights.len() > SCM_MAX_FD {
            return Err(e::EINVAL);
        }
        at += cmsg_len.next_multiple_of(8);
    }
    Ok(rights)
}

/// `sendmsg(fd, msg, flags)`.
pub fn sendmsg(current: &Current, fd: u64, msg: u64, flags: u64) -> SysResult {
    let [name, namelen, iov, iovlen, control, controllen, _] = read_msghdr(msg)?;
    let mut data = Vec::new();
    for (base, len) in read_iovecs(iov, iovlen)? {
        let room = MAX_IO.saturating_sub(data.len()) as u64;
        data.extend_from_slice(&read_user(base, len.min(room))?);
    }
    let rights = read_rights(current, control, controllen)?;
    let to = (name != 0).then_some((name, namelen & 0xffff_ffff));
    send_common(current, fd, &data, to, rights, flags as u32)
}

/// `recvmsg(fd, msg, flags)`.
pub fn recvmsg(current: &Current, fd: u64, msg: u64, flags: u64) -> SysResult {
    let (file, socket) = socket_of(current, fd)?;
    let flags = flags as u32;
    let [name, namelen, iov, iovlen, control, controllen, _] = read_msghdr(msg)?;
    let iovecs = read_iovecs(iov, iovlen)?;
    let total: u64 = iovecs.iter().map(|(_, l)| *l).sum();
    let mut data = vec![0u8; (total as usize).min(MAX_IO)];
    let got = socket
        .recv(&current.task, &mut data, call_flags(&file, flags))
        .map_err(restart)?;
    let mut at = 0;
    for (base, len) in &iovecs {
        if at >= got.len {
            break;
        }
        let n = (*len as usize).min(got.len - at);
        user::copy_to_user(*base, &data[at..at + n]).map_err(|_| e::EFAULT)?;
        at += n;
    }
    let mut out_flags = 0;
    if got.full_len > got.len {
        out_flags |= MSG_TRUNC;
    }
    // The name: msg_namelen says how much room, and comes back as the full size.
    let name_len = match (&got.from, name) {
        (Some(from), address) if address != 0 => {
            let bytes = encode_address(from);
            let room = (namelen as u32 as usize).min(bytes.len());
            user::copy_to_user(address, &bytes[..room]).map_err(|_| e::EFAULT)?;
            bytes.len() as u64
        }
        _ => 0,
    };
    let control_used = write_rights(
        current,
        got.rights,
        control,
        controllen,
        flags,
        &mut out_flags,
    )?;
    let header = UserPtr::<[u64; 7]>::new(msg);
    let mut words = header.read().map_err(|_| e::EFAULT)?;
    words[1] = (words[1] & !0xffff_ffff) | name_len;
    words[5] = control_used;
    words[6] = (words[6] & !0xffff_ffff) | u64::from(out_flags);
    header.write(words).map_err(|_| e::EFAULT)?;
    let reported = if flags & MSG_TRUNC != 0 && socket.ty == Type::Datagram {
        got.full_len
    } else {
        got.len
    };
    Ok(reported as u64)
}

/// Installs received files as descriptors and writes their `SCM_RIGHTS` message; returns
/// the control bytes used. Files that do not fit are closed and `MSG_CTRUNC` is set.
fn write_rights(
    current: &Current,
    rights: Vec<Arc<OpenFile>>,
    control: u64,
    len: u64,
    flags: u32,
    out_flags: &mut u32,
) -> Result<u64, u32> {
    if rights.is_empty() {
        return Ok(0);
    }
    let room = if control == 0 { 0 } else { len as usize };
    if room < 16 + 4 {
        *out_flags |= MSG_CTRUNC;
        return Ok(0);
    }
    let fit = ((room - 16) / 4).min(rights.len());
    if fit < rights.len() {
        *out_flags |= MSG_CTRUNC;
    }
    let cloexec = flags & MSG_CMSG_CLOEXEC != 0;
    let mut fds = Vec::with_capacity(fit);
    {
        let table = current.process().fds();
        let mut table = table.lock();
        for file in rights.into_iter().take(fit) {
            match table.insert(file, cloexec) {
                Ok(fd) => fds.push(fd as i32),
                Err(_) => {
                    *out_flags |= MSG_CTRUNC;
                    break;
                }
            }
        }
    }
    let cmsg_len = 16 + 4 * fds.len();
    let mut out = Vec::with_capacity(cmsg_len);
    out.extend_from_slice(&(cmsg_len as u64).to_ne_bytes());
    out.extend_from_slice(&n::SOL_SOCKET.to_ne_bytes());
    out.extend_from_slice(&SCM_RIGHTS.to_ne_bytes());
    for fd in &fds {
        out.extend_from_slice(&fd.to_ne_bytes());
    }
    user::copy_to_user(control, &out).map_err(|_| e::EFAULT)?;
    // msg_controllen comes back as the space used, aligned as CMSG_SPACE would be, but
    // never more than was given.
    Ok((cmsg_len.next_multiple_of(8) as u64).min(len))
}

/// `shutdown(fd, how)`.
pub fn shutdown(current: &Current, fd: u64, how: u64) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    socket.shutdown(how as u32).map(|()| 0)
}

/// `getsockname(fd, addr, len)`.
pub fn getsockname(current: &Current, fd: u64, addr: u64, len: u64) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    if addr == 0 || len == 0 {
        return Err(e::EFAULT);
    }
    write_address(&socket.local_address(), addr, len).map(|()| 0)
}

/// `getpeername(fd, addr, len)`.
pub fn getpeername(current: &Current, fd: u64, addr: u64, len: u64) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    let peer = socket.peer_address()?;
    if addr == 0 || len == 0 {
        return Err(e::EFAULT);
    }
    write_address(&peer, addr, len).map(|()| 0)
}

/// Options set and read back without changing behaviour here.
const SOL_SOCKET_INERT: [u32; 7] = [
    n::SO_BROADCAST,
    n::SO_REUSEPORT,
    n::SO_OOBINLINE,
    n::SO_PRIORITY,
    n::SO_PASSCRED,
    n::SO_DONTROUTE,
    n::SO_RCVLOWAT,
];
/// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`.
const TCP_INERT: [u32; 3] = [4, 5, 6];
const TCP_NODELAY: u32 = 1;

fn read_int(value: u64, len: u64) -> Result<i32, u32> {
    if (len as u32 as i32) < 4 {
        return Err(e::EINVAL);
    }
    UserPtr::<i32>::new(value).read().map_err(|_| e::EFAULT)
}

fn read_timeout(value: u64, len: u64) -> Result<u64, u32> {
    if (len as u32 as i32) < 16 {
        return Err(e::EINVAL);
    }
    let [sec, usec] = UserPtr::<[i64; 2]>::new(value)
        .read()
        .map_err(|_| e::EFAULT)?;
    if !(0..1_000_000).contains(&usec) {
        return Err(e::EDOM);
    }
    if sec < 0 {
        return Ok(0);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(usec as u64 * 1000))
}

/// `setsockopt(fd, level, name, value, len)`.
pub fn setsockopt(
    current: &Current,
    fd: u64,
    level: u64,
    name: u64,
    value: u64,
    len: u64,
) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    let (level, name) = (level as u32, name as u32);
    let mut o = socket.options.lock();
    match (level, name) {
        (n::SOL_SOCKET, n::SO_REUSEADDR) => o.reuse_addr = read_int(value, len)? != 0,
        (n::SOL_SOCKET, n::SO_KEEPALIVE) => o.keepalive = read_int(value, len)? != 0,
        (n::SOL_SOCKET, n::SO_RCVBUF | n::SO_RCVBUFFORCE) => {
            let v = read_int(value, len)?.max(0) as u32;
            o.rcvbuf = (v.min(212_992) * 2).max(2304);
        }
        (n::SOL_SOCKET, n::SO_SNDBUF | n::SO_SNDBUFFORCE) => {
            let v = read_int(value, len)?.max(0) as u32;
            o.sndbuf = (v.min(212_992) * 2).max(4608);
        }
        (n::SOL_SOCKET, n::SO_RCVTIMEO_OLD | n::SO_RCVTIMEO_NEW) => {
            o.rcv_timeout = read_timeout(value, len)?;
        }
        (n::SOL_SOCKET, n::SO_SNDTIMEO_OLD | n::SO_SNDTIMEO_NEW) => {
            o.snd_timeout = read_timeout(value, len)?;
        }
        (n::SOL_SOCKET, n::SO_LINGER) => {
            if (len as u32 as i32) < 8 {
                return Err(e::EINVAL);
            }
        }
        (n::SOL_SOCKET, opt) if SOL_SOCKET_INERT.contains(&opt) => {
            read_int(value, len)?;
        }
        (n::SOL_SOCKET, _) => return Err(e::ENOPROTOOPT),
        (IPPROTO_TCP, _) if socket.domain() != n::AF_INET || socket.ty != Type::Stream => {
            return Err(e::EOPNOTSUPP);
        }
        (IPPROTO_TCP, TCP_NODELAY) => o.nodelay = read_int(value, len)? != 0,
        (IPPROTO_TCP, opt) if TCP_INERT.contains(&opt) => {
            if read_int(value, len)? < 1 {
                return Err(e::EINVAL);
            }
        }
        (IPPROTO_TCP, _) => return Err(e::ENOPROTOOPT),
        _ if socket.domain() == n::AF_UNIX => return Err(e::EOPNOTSUPP),
        _ => return Err(e::ENOPROTOOPT),
    }
    Ok(0)
}

/// `getsockopt(fd, level, name, value, len)`.
pub fn getsockopt(
    current: &Current,
    fd: u64,
    level: u64,
    name: u64,
    value: u64,
    len: u64,
) -> SysResult {
    let (_, socket) = socket_of(current, fd)?;
    let room = UserPtr::<i32>::new(len).read().map_err(|_| e::EFAULT)?;
    if room < 0 {
        return Err(e::EINVAL);
    }
    let int = |v: u32| v.to_ne_bytes().to_vec();
    let timeval = |ns: u64| {
        let mut out = (ns / 1_000_000_000).to_ne_bytes().to_vec();
        out.extend_from_slice(&(ns % 1_000_000_000 / 1000).to_ne_bytes());
        out
    };
    let o = *socket.options.lock();
    let bytes = match (level as u32, name as u32) {
        (n::SOL_SOCKET, n::SO_REUSEADDR) => int(u32::from(o.reuse_addr)),
        (n::SOL_SOCKET, n::SO_KEEPALIVE) => int(u32::from(o.keepalive)),
        (n::SOL_SOCKET, n::SO_TYPE) => int(socket.ty.number()),
        (n::SOL_SOCKET, n::SO_DOMAIN) => int(socket.domain()),
        (n::SOL_SOCKET, n::SO_PROTOCOL) => int(match (socket.domain(), socket.ty) {
            (n::AF_INET, Type::Stream) => IPPROTO_TCP,
            (n::AF_INET, Type::Datagram) => IPPROTO_UDP,
            _ => 0,
        }),
        (n::SOL_SOCKET, n::SO_ACCEPTCONN) => int(u32::from(socket.listening())),
        (n::SOL_SOCKET, n::SO_ERROR) => int(socket.take_error()),
        (n::SOL_SOCKET, n::SO_RCVBUF) => int(o.rcvbuf),
        (n::SOL_SOCKET, n::SO_SNDBUF) => int(o.sndbuf),
        (n::SOL_SOCKET, n::SO_RCVTIMEO_OLD) => timeval(o.rcv_timeout),
        (n::SOL_SOCKET, n::SO_SNDTIMEO_OLD) => timeval(o.snd_timeout),
        (n::SOL_SOCKET, n::SO_LINGER) => vec![0; 8],
        (n::SOL_SOCKET, opt) if SOL_SOCKET_INERT.contains(&opt) => int(0),
        (n::SOL_SOCKET, _) => return Err(e::ENOPROTOOPT),
        (IPPROTO_TCP, _) if socket.domain() != n::AF_INET || socket.ty != Type::Stream => {
            return Err(e::EOPNOTSUPP);
        }
        (IPPROTO_TCP, TCP_NODELAY) => int(u32::from(o.nodelay)),
        (IPPROTO_TCP, 4) => int(7200),
        (IPPROTO_TCP, 5) => int(75),
        (IPPROTO_TCP, 6) => int(9),
        (IPPROTO_TCP, _) => return Err(e::ENOPROTOOPT),
        _ if socket.domain() == n::AF_UNIX => return Err(e::EOPNOTSUPP),
        _ => return Err(e::ENOPROTOOPT),
    };
    let count = bytes.len().min(room as usize);
    user::copy_to_user(value, &bytes[..count]).map_err(|_| e::EFAULT)?;
    UserPtr::<i32>::new(len)
        .write(count as i32)
        .map_err(|_| e::EFAULT)?;
    Ok(0)
}
