//! Reading C arguments at the boundary: NUL-terminated strings (checked
//! UTF-8), paths, arrays given as pointer and length. Each check names the
//! function and the argument in its error.

use crate::status::{Fail, NJ_ERR_INVALID_UTF8, NJ_ERR_NULL_ARGUMENT};
use std::ffi::{c_char, CStr};
use std::path::Path;

/// The UTF-8 string at `p`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, func: &str, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::new(NJ_ERR_NULL_ARGUMENT, format!("{func}: {what} is NULL")));
    }
    // SAFETY: `p` is non-null and NUL-terminated, valid for 'a (the
    // contract).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes)
        .map_err(|e| Fail::new(NJ_ERR_INVALID_UTF8, format!("{func}: {what} is not valid UTF-8 ({e})")))
}

/// The path at `p`: any bytes on Unix, UTF-8 elsewhere.
///
/// # Safety
/// As for [`c_str`].
pub(crate) unsafe fn c_path<'a>(p: *const c_char, func: &str, what: &str) -> Result<&'a Path, Fail> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if p.is_null() {
            return Err(Fail::new(NJ_ERR_NULL_ARGUMENT, format!("{func}: {what} is NULL")));
        }
        // SAFETY: `p` is non-null and NUL-terminated, valid for 'a (the
        // contract).
        let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
        Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: the contract is `c_str`'s.
        unsafe { c_str(p, func, what) }.map(Path::new)
    }
}

/// The `n` elements at `p` (which may be NULL when `n` is 0).
///
/// # Safety
/// Unless `n` is 0, `p` is NULL or points to `n` initialized, aligned `T`s
/// that stay valid and unchanged for `'a`.
pub(crate) unsafe fn c_array<'a, T>(p: *const T, n: usize, func: &str, what: &str) -> Result<&'a [T], Fail> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::new(NJ_ERR_NULL_ARGUMENT, format!("{func}: {what} is NULL but its length is {n}")));
    }
    // SAFETY: `p` is non-null and points to `n` valid `T`s for 'a (the
    // contract).
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Checks that an out-pointer is not NULL.
pub(crate) fn out_ptr<T>(p: *mut T, func: &str, what: &str) -> Result<(), Fail> {
    if p.is_null() {
        Err(Fail::new(NJ_ERR_NULL_ARGUMENT, format!("{func}: {what} is NULL")))
    } else {
        Ok(())
    }
}
