"""Collectives over a Train worker group's process group; with one process (or none) they return at once."""

from __future__ import annotations

import torch.distributed as dist


def _single() -> bool:
    """True when there is no process group to talk to, or it has one process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1


def gather_objects(items: list) -> list:
    """This rank's list -> every rank's lists, in rank order (all_gather over the process group)."""
    if _single():
        return [items]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return gathered


def broadcast_from_rank0(value):
    """Rank 0's value on every rank (what other ranks pass is ignored)."""
    if _single():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
