//! The handle registry: what makes freed, foreign and mistyped handles
//! detectable.
//!
//! A handle (`nj_compiler*`, `nj_kernel*`, `nj_error*`) is an opaque token,
//! not an address: the library never dereferences it. Each is a fresh
//! counter value with the handle type in its low bits, and the objects live
//! in one global map from token to object. Every entry point looks its
//! handle up in the map (a read lock and a reference-count increment), so:
//! - a freed handle, or a second free, is always detected (tokens are never
//!   reused, unlike addresses);
//! - a handle of the wrong type, or a value the library never returned, is
//!   detected;
//! - a call in flight on another thread keeps its object alive, so a free
//!   that races with it is a logic error of the caller but not a memory
//!   error of the library (the strings a handle owns are the exception: they
//!   die with it).

use crate::kernel::KernelObj;
use crate::status::{ErrorObj, Fail, NJ_ERR_INVALID_HANDLE, NJ_ERR_NULL_ARGUMENT};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

/// The type of a handle, stored in a token's low bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Compiler = 1,
    Kernel = 2,
    Error = 3,
}

impl Kind {
    fn of_tag(tag: usize) -> Option<Kind> {
        match tag {
            1 => Some(Kind::Compiler),
            2 => Some(Kind::Kernel),
            3 => Some(Kind::Error),
            _ => None,
        }
    }

    fn c_name(self) -> &'static str {
        match self {
            Kind::Compiler => "nj_compiler",
            Kind::Kernel => "nj_kernel",
            Kind::Error => "nj_error",
        }
    }
}

/// A live object.
pub(crate) enum Object {
    Compiler(normjit::Compiler),
    Kernel(Arc<KernelObj>),
    Error(Arc<ErrorObj>),
}

impl Object {
    fn kind(&self) -> Kind {
        match self {
            Object::Compiler(_) => Kind::Compiler,
            Object::Kernel(_) => Kind::Kernel,
            Object::Error(_) => Kind::Error,
        }
    }
}

/// Bits of a token that hold its [`Kind`].
const TAG_BITS: u32 = 4;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;

/// The serial number the next token gets (starts at 1: no token is 0, so
/// none is NULL).
static NEXT: AtomicUsize = AtomicUsize::new(1);

static LIVE: LazyLock<RwLock<HashMap<usize, Object>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

fn live_read() -> std::sync::RwLockReadGuard<'static, HashMap<usize, Object>> {
    // Nothing panics while holding the lock (map operations only), so a
    // poisoned lock still guards a valid map.
    LIVE.read().unwrap_or_else(PoisonError::into_inner)
}

fn live_write() -> std::sync::RwLockWriteGuard<'static, HashMap<usize, Object>> {
    LIVE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `obj` and returns its new token.
pub(crate) fn register(obj: Object) -> Result<usize, Fail> {
    let kind = obj.kind();
    let serial = NEXT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            n.checked_add(1).filter(|&m| m <= usize::MAX >> TAG_BITS)
        })
        .map_err(|_| Fail::new(crate::status::NJ_ERR_CONFIG, "normjit has run out of handle numbers"))?;
    let token = (serial << TAG_BITS) | kind as usize;
    live_write().insert(token, obj);
    Ok(token)
}

/// A token as the C pointer type `T` (never dereferenced by anyone).
pub(crate) fn to_ptr<T>(token: usize) -> *mut T {
    std::ptr::without_provenance_mut(token)
}

/// Why `token` is not a live handle of kind `want`.
fn invalid(token: usize, want: Kind, func: &str) -> Fail {
    let want_name = want.c_name();
    if token == 0 {
        return Fail::new(NJ_ERR_NULL_ARGUMENT, format!("{func}: the {want_name} handle is NULL"));
    }
    let serial = token >> TAG_BITS;
    let issued = serial >= 1 && serial < NEXT.load(Ordering::Relaxed);
    let why = match Kind::of_tag(token & TAG_MASK) {
        Some(k) if issued && k == want => format!("this {want_name} was already freed"),
        Some(k) if issued => format!("it is an {} handle, not an {want_name}", k.c_name()),
        _ => format!("it is not an {want_name} handle returned by normjit"),
    };
    Fail::new(NJ_ERR_INVALID_HANDLE, format!("{func}: invalid {want_name} handle {token:#x}: {why}"))
}

/// The compiler behind a live `nj_compiler` token.
pub(crate) fn compiler(token: usize, func: &str) -> Result<normjit::Compiler, Fail> {
    match live_read().get(&token) {
        Some(Object::Compiler(c)) => Ok(c.clone()),
        _ => Err(invalid(token, Kind::Compiler, func)),
    }
}

/// The kernel behind a live `nj_kernel` token.
pub(crate) fn kernel(token: usize, func: &str) -> Result<Arc<KernelObj>, Fail> {
    match live_read().get(&token) {
        Some(Object::Kernel(k)) => Ok(k.clone()),
        _ => Err(invalid(token, Kind::Kernel, func)),
    }
}

/// The error behind a live `nj_error` token.
pub(crate) fn error(token: usize) -> Option<Arc<ErrorObj>> {
    match live_read().get(&token) {
        Some(Object::Error(e)) => Some(e.clone()),
        _ => None,
    }
}

/// Unregisters a live token of kind `want` and returns its object (which
/// the caller drops outside the lock: dropping a kernel frees code).
pub(crate) fn release(token: usize, want: Kind, func: &str) -> Result<Object, Fail> {
    let mut live = live_write();
    match live.get(&token) {
        Some(obj) if obj.kind() == want => Ok(live.remove(&token).expect("the token is live")),
        _ => {
            drop(live);
            Err(invalid(token, want, func))
        }
    }
}
