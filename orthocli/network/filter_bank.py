"""What a filter bank is (banks.py finds them): a conv's output channels as every tensor that
indexes them (`Channel`), and where they are handed on. Plain data, apart so that the walk to a
channel's readers (channel_readers.py), which banks.py runs while it builds them, can name it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Channel:
    """One tensor indexed by a conv's output channels along `dim`."""

    key: str
    dim: int
    # conv_weight | conv_bias | bn_weight | bn_bias | bn_mean | bn_var | other; dw_<role>: see `follow`;
    # rd_<role>: a BatchNorm that reads the channels further on (after a concatenation), at `offset`
    role: str
    offset: int = 0  # the bank's filter i is index offset + i of this tensor


@dataclass
class FilterBank:
    name: str  # the conv's weight key without ".weight"
    key: str
    groups: int = 1
    transposed: bool = False
    channels: list[Channel] = field(default_factory=list)
    mask_node: str | None = None  # fx node after which the channels are masked
    # Depthwise convs that read this bank's channels one to one (channel i -> their filter i): a
    # dropped channel takes their filter, bias and BatchNorm with it (roles "dw_*" in `channels`),
    # and their output is masked too, so the sub-network is what compaction leaves.
    follow: list[str] = field(default_factory=list)
    # Why a dropped filter of this conv could not be silent at every reader (a step after the mask
    # point maps zero to non-zero where no mask can go); None: it can. Such a conv is never dropped from.
    unsilenceable: str | None = None
