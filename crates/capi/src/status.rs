//! Status codes, the `nj_error` object, and the boundary every entry point
//! goes through ([`guard`]): it runs the body under `catch_unwind`, turns a
//! failure (or a panic) into a status code, and hands the caller an error
//! object through the optional `nj_error**` out-parameter.

use crate::handle::{self, Kind, Object};
use normjit::ErrorKind;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Success.
pub const NJ_OK: i32 = 0;
/// Kernel source that does not parse or verify; the message is the rendered
/// diagnostics (`name:line:col: error: ...`, the source line and a caret).
pub const NJ_ERR_SOURCE: i32 = 1;
/// A file that cannot be read.
pub const NJ_ERR_IO: i32 = 2;
/// A tensor, param or dim name the kernel does not have.
pub const NJ_ERR_UNKNOWN_NAME: i32 = 3;
/// A tensor missing, given twice, or given the wrong way.
pub const NJ_ERR_BINDING: i32 = 4;
/// A wrong number of tensors or params in a positional call.
pub const NJ_ERR_ARITY: i32 = 5;
/// A NULL data pointer for a tensor with elements, or a buffer whose length
/// fits no sizes.
pub const NJ_ERR_BUFFER: i32 = 6;
/// A wrong rank, or a shape that contradicts another tensor's.
pub const NJ_ERR_SHAPE: i32 = 7;
/// A tensor of the wrong element type.
pub const NJ_ERR_DTYPE: i32 = 8;
/// An output that overlaps another tensor in memory.
pub const NJ_ERR_ALIAS: i32 = 9;
/// A param that is missing or not a valid value (NaN, infinite, out of range).
pub const NJ_ERR_PARAM: i32 = 10;
/// Sizes whose product overflows.
pub const NJ_ERR_OVERFLOW: i32 = 11;
/// A host or setting normjit cannot use (unsupported ISA, thread pool that
/// failed to start).
pub const NJ_ERR_CONFIG: i32 = 12;
/// A kernel shape the compiler does not support.
pub const NJ_ERR_UNSUPPORTED: i32 = 13;
/// A broken invariant inside normjit (a bug), including a panic caught at
/// the C boundary.
pub const NJ_ERR_INTERNAL: i32 = 14;
/// A required pointer argument was NULL.
pub const NJ_ERR_NULL_ARGUMENT: i32 = 100;
/// A string argument (source text, name) that is not valid UTF-8.
pub const NJ_ERR_INVALID_UTF8: i32 = 101;
/// A negative rank or a negative size in a tensor's shape.
pub const NJ_ERR_NEGATIVE_SHAPE: i32 = 102;
/// A handle that is not live: already freed, never returned by normjit, or
/// a handle of another type (e.g. an `nj_kernel*` passed as `nj_compiler*`).
pub const NJ_ERR_INVALID_HANDLE: i32 = 103;
/// Any other invalid argument: an unknown enum code, an index out of range,
/// a malformed library pipeline name.
pub const NJ_ERR_INVALID_ARGUMENT: i32 = 104;

// The codes 1..=14 are `normjit::ErrorKind`'s own.
const _: () = {
    assert!(NJ_ERR_SOURCE == ErrorKind::Source as i32);
    assert!(NJ_ERR_IO == ErrorKind::Io as i32);
    assert!(NJ_ERR_UNKNOWN_NAME == ErrorKind::UnknownName as i32);
    assert!(NJ_ERR_BINDING == ErrorKind::Binding as i32);
    assert!(NJ_ERR_ARITY == ErrorKind::Arity as i32);
    assert!(NJ_ERR_BUFFER == ErrorKind::Buffer as i32);
    assert!(NJ_ERR_SHAPE == ErrorKind::Shape as i32);
    assert!(NJ_ERR_DTYPE == ErrorKind::DType as i32);
    assert!(NJ_ERR_ALIAS == ErrorKind::Alias as i32);
    assert!(NJ_ERR_PARAM == ErrorKind::Param as i32);
    assert!(NJ_ERR_OVERFLOW == ErrorKind::Overflow as i32);
    assert!(NJ_ERR_CONFIG == ErrorKind::Config as i32);
    assert!(NJ_ERR_UNSUPPORTED == ErrorKind::Unsupported as i32);
    assert!(NJ_ERR_INTERNAL == ErrorKind::Internal as i32);
};

/// An error: a status code and a message. Returned through the optional
/// `nj_error** err` out-parameter of a failing call; each failing call makes
/// a new one, owned by the caller, who frees it with `nj_error_free`.
pub struct nj_error {
    _opaque: [u8; 0],
}

/// What an `nj_error` token stands for.
pub(crate) struct ErrorObj {
    pub code: i32,
    pub message: CString,
}

/// A failure inside an entry point, before it becomes an `nj_error`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub code: i32,
    pub message: String,
}

impl Fail {
    pub fn new(code: i32, message: impl Into<String>) -> Fail {
        Fail { code, message: message.into() }
    }
}

impl From<normjit::Error> for Fail {
    fn from(e: normjit::Error) -> Fail {
        Fail { code: e.kind() as i32, message: e.to_string() }
    }
}

/// `s` as a C string; interior NULs (which a message can only contain when
/// it quotes a file that has them) become U+FFFD.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("every NUL was replaced"))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

/// Runs an entry point's body: returns `NJ_OK` and stores NULL in `*err`
/// on success; on failure or panic returns the status code and stores a new
/// `nj_error` in `*err`. Nothing unwinds out of it.
///
/// # Safety
/// `err` is NULL or valid for writing one pointer.
pub(crate) unsafe fn guard(err: *mut *mut nj_error, body: impl FnOnce() -> Result<(), Fail>) -> i32 {
    let result = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let message = format!("internal error (a normjit bug): panic: {}", panic_message(&*payload));
            // Dropping the payload can itself panic; never let that unwind.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(Fail::new(NJ_ERR_INTERNAL, message))
        }
    };
    let (code, fail) = match result {
        Ok(()) => (NJ_OK, None),
        Err(f) => (f.code, Some(f)),
    };
    if !err.is_null() {
        let e = match fail {
            None => std::ptr::null_mut(),
            Some(f) => {
                let obj = Arc::new(ErrorObj { code: f.code, message: c_string(&f.message) });
                // Registering allocates and cannot otherwise fail; if it did
                // panic, report the code without an object.
                catch_unwind(AssertUnwindSafe(|| handle::register(Object::Error(obj))))
                    .ok()
                    .and_then(Result::ok)
                    .map_or(std::ptr::null_mut(), handle::to_ptr)
            }
        };
        // SAFETY: `err` is non-null and, by this function's contract, valid
        // for writing one pointer.
        unsafe { err.write(e) };
    }
    code
}

/// The message of an error: a NUL-terminated UTF-8 string owned by `error`,
/// valid until `nj_error_free(error)`. Never NULL: for a NULL or invalid
/// `error` it is a static string saying so.
///
/// # Safety
/// None beyond passing a value this library returned (any value is
/// checked).
#[no_mangle]
pub unsafe extern "C" fn nj_error_message(error: *const nj_error) -> *const c_char {
    let found = catch_unwind(|| {
        if error.is_null() {
            return c"(NULL nj_error)".as_ptr();
        }
        match handle::error(error.addr()) {
            // The registry keeps its own reference to the object until
            // `nj_error_free`, so the string outlives this clone.
            Some(e) => e.message.as_ptr(),
            None => c"(invalid nj_error: freed, or not returned by normjit)".as_ptr(),
        }
    });
    found.unwrap_or(c"(internal error reading an nj_error)".as_ptr())
}

/// The status code of an error (one of the `NJ_ERR_*` codes).
/// `NJ_ERR_NULL_ARGUMENT` for NULL, `NJ_ERR_INVALID_HANDLE` for a freed or
/// foreign pointer.
///
/// # Safety
/// None (any value is checked).
#[no_mangle]
pub unsafe extern "C" fn nj_error_code(error: *const nj_error) -> i32 {
    let found = catch_unwind(|| {
        if error.is_null() {
            return NJ_ERR_NULL_ARGUMENT;
        }
        handle::error(error.addr()).map_or(NJ_ERR_INVALID_HANDLE, |e| e.code)
    });
    found.unwrap_or(NJ_ERR_INTERNAL)
}

/// Frees an error. NULL is a no-op returning `NJ_OK`; an error that was
/// already freed (or any pointer normjit did not return as an `nj_error*`)
/// is detected and returns `NJ_ERR_INVALID_HANDLE` without touching memory.
///
/// # Safety
/// None (any value is checked). Strings from `nj_error_message(error)` are
/// invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn nj_error_free(error: *mut nj_error) -> i32 {
    if error.is_null() {
        return NJ_OK;
    }
    let released = catch_unwind(|| handle::release(error.addr(), Kind::Error, "nj_error_free").map(drop));
    match released {
        Ok(Ok(())) => NJ_OK,
        Ok(Err(f)) => f.code,
        Err(_) => NJ_ERR_INTERNAL,
    }
}

/// The name of a status code, e.g. `"NJ_ERR_SHAPE"` for 7: a static string
/// (never freed). `"NJ_ERR_UNKNOWN_CODE"` for a code this version does not
/// define.
#[no_mangle]
pub extern "C" fn nj_status_name(code: i32) -> *const c_char {
    // A lookup that cannot panic; still, nothing unwinds out of the API.
    catch_unwind(|| status_name(code)).unwrap_or(c"NJ_ERR_INTERNAL").as_ptr()
}

fn status_name(code: i32) -> &'static std::ffi::CStr {
    match code {
        NJ_OK => c"NJ_OK",
        NJ_ERR_SOURCE => c"NJ_ERR_SOURCE",
        NJ_ERR_IO => c"NJ_ERR_IO",
        NJ_ERR_UNKNOWN_NAME => c"NJ_ERR_UNKNOWN_NAME",
        NJ_ERR_BINDING => c"NJ_ERR_BINDING",
        NJ_ERR_ARITY => c"NJ_ERR_ARITY",
        NJ_ERR_BUFFER => c"NJ_ERR_BUFFER",
        NJ_ERR_SHAPE => c"NJ_ERR_SHAPE",
        NJ_ERR_DTYPE => c"NJ_ERR_DTYPE",
        NJ_ERR_ALIAS => c"NJ_ERR_ALIAS",
        NJ_ERR_PARAM => c"NJ_ERR_PARAM",
        NJ_ERR_OVERFLOW => c"NJ_ERR_OVERFLOW",
        NJ_ERR_CONFIG => c"NJ_ERR_CONFIG",
        NJ_ERR_UNSUPPORTED => c"NJ_ERR_UNSUPPORTED",
        NJ_ERR_INTERNAL => c"NJ_ERR_INTERNAL",
        NJ_ERR_NULL_ARGUMENT => c"NJ_ERR_NULL_ARGUMENT",
        NJ_ERR_INVALID_UTF8 => c"NJ_ERR_INVALID_UTF8",
        NJ_ERR_NEGATIVE_SHAPE => c"NJ_ERR_NEGATIVE_SHAPE",
        NJ_ERR_INVALID_HANDLE => c"NJ_ERR_INVALID_HANDLE",
        NJ_ERR_INVALID_ARGUMENT => c"NJ_ERR_INVALID_ARGUMENT",
        _ => c"NJ_ERR_UNKNOWN_CODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    // A panic inside an entry point's body becomes NJ_ERR_INTERNAL with the
    // panic message; nothing unwinds into the caller. (No input reaches a
    // panic through the public functions, so the guard is tested directly.)
    #[test]
    fn panic_is_caught_and_reported() {
        let mut err: *mut nj_error = std::ptr::null_mut();
        // SAFETY: `err` is a valid out-pointer.
        let code = unsafe { guard(&mut err, || panic!("boom at the boundary")) };
        assert_eq!(code, NJ_ERR_INTERNAL);
        assert!(!err.is_null());
        // SAFETY: `err` came from `guard` and is not freed yet.
        let msg = unsafe { CStr::from_ptr(nj_error_message(err)) }.to_str().unwrap().to_string();
        assert!(msg.contains("panic: boom at the boundary"), "{msg}");
        // SAFETY: as above.
        unsafe {
            assert_eq!(nj_error_code(err), NJ_ERR_INTERNAL);
            assert_eq!(nj_error_free(err), NJ_OK);
            assert_eq!(nj_error_free(err), NJ_ERR_INVALID_HANDLE);
        }
    }

    #[test]
    fn success_clears_the_error_out_parameter() {
        let mut err: *mut nj_error = 0x1234 as *mut nj_error;
        // SAFETY: `err` is a valid out-pointer.
        let code = unsafe { guard(&mut err, || Ok(())) };
        assert_eq!(code, NJ_OK);
        assert!(err.is_null());
    }

    #[test]
    fn interior_nul_in_a_message_is_replaced() {
        assert_eq!(c_string("a\0b").to_str().unwrap(), "a\u{FFFD}b");
    }
}
