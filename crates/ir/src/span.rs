//! Byte ranges into a source text.

/// A half-open byte range `lo..hi` into the source a kernel was parsed from.
/// Builder-made kernels carry [`Span::DUMMY`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub lo: u32,
    /// One past the last byte.
    pub hi: u32,
}

impl Span {
    /// The span of no source text.
    pub const DUMMY: Span = Span { lo: u32::MAX, hi: u32::MAX };
    /// The span `lo..hi`.
    pub fn new(lo: usize, hi: usize) -> Self {
        // Sources are capped far below 4 GiB by the parser; saturate anyway.
        let c = |x: usize| u32::try_from(x).unwrap_or(u32::MAX - 1);
        Span { lo: c(lo), hi: c(hi) }
    }
    /// True for [`Span::DUMMY`].
    pub fn is_dummy(self) -> bool {
        self.lo == u32::MAX
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        if self.is_dummy() {
            return other;
        }
        if other.is_dummy() {
            return self;
        }
        Span { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi) }
    }
}
