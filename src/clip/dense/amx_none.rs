//! `amx/` where the target is not x86-64: never enabled, so nothing here is ever called.

use super::pack::{HostNorm, Line};
use super::tiles::Out;

pub fn enabled() -> bool {
    false
}

pub fn int8_enabled() -> bool {
    false
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AmxKind {
    Split,
    Bf16,
}

pub(super) struct AmxWeight {
    pub(super) kind: AmxKind,
}

impl AmxWeight {
    pub(super) fn pack(_w: &[f32], _n: usize, _k: usize, _kind: AmxKind) -> Option<Self> {
        None
    }

    pub(super) fn pack_int8(_w: &[f32], _n: usize, _k: usize) -> Option<Self> {
        None
    }
}

pub(super) fn rows_lines(_m: usize, _k: usize, _kind: AmxKind) -> usize {
    unreachable!("AMX is never enabled on this target")
}

pub(super) fn pack_rows(
    _x: &[f32],
    _m: usize,
    _k: usize,
    _norm: Option<HostNorm<'_>>,
    _kind: AmxKind,
    _out: &mut Vec<Line>,
) {
    unreachable!("AMX is never enabled on this target")
}

/// # Safety
/// Never called: AMX is never [`enabled`] on this target (the contract of `amx/`'s `matmul`
/// begins with AMX enabled).
pub(super) unsafe fn matmul(_w: &AmxWeight, _bias: &[f32], _a: &[Line], _m: usize, _out: &Out) {
    unreachable!("AMX is never enabled on this target")
}

pub(super) fn pack_rows_int8_with(
    _x: &[f32],
    _m: usize,
    _k: usize,
    _norm: Option<HostNorm<'_>>,
    _maxima: Option<&[f32]>,
    _out: &mut Vec<Line>,
) {
    unreachable!("AMX is never enabled on this target")
}
