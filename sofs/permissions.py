"""Who may do what: the caller of a request (:class:`Ctx`) and the permission rules the file
layer enforces itself (access bits, sticky directories, who changes owner, group and mode).

A FUSE mount with ``default_permissions`` leaves most of this to the kernel (see
:class:`sofs.fs.Filesystem`'s ``check_permissions``); :func:`check_access` serves ``access(2)``.
"""

from __future__ import annotations

import dataclasses
import os
import stat

from .errors import AccessDenied, NotPermitted
from .inode import Inode


@dataclasses.dataclass(frozen=True)
class Ctx:
    """Who asks: the caller's uid, gid and umask (from the FUSE request)."""

    uid: int = 0
    gid: int = 0
    umask: int = 0


ROOT_CTX = Ctx()


def check_access(node: Inode, mode: int, ctx: Ctx) -> None:
    """AccessDenied unless ``ctx`` may access ``node`` with ``mode`` (R_OK|W_OK|X_OK)."""
    if mode == os.F_OK:
        return
    if ctx.uid == 0:
        if mode & os.X_OK and not node.is_dir and not node.mode & 0o111:
            raise AccessDenied("no execute bit")
        return
    if ctx.uid == node.uid:
        bits = (node.mode >> 6) & 7
    elif ctx.gid == node.gid:
        bits = (node.mode >> 3) & 7
    else:
        bits = node.mode & 7
    if mode & ~bits & 7:
        raise AccessDenied("permission bits deny access")


def check_sticky(parent: Inode, node: Inode, ctx: Ctx) -> None:
    """NotPermitted if ``parent`` is sticky and ``ctx`` owns neither it nor ``node``."""
    if parent.mode & stat.S_ISVTX and ctx.uid not in (0, parent.uid, node.uid):
        raise NotPermitted("sticky directory: only the owner may remove or rename")


def check_setattr(node: Inode, ctx: Ctx, *, mode: int | None, uid: int | None,
                  gid: int | None) -> None:
    """NotPermitted unless ``ctx`` may make these changes of owner, group and mode."""
    if uid is not None and uid != node.uid and ctx.uid != 0:
        raise NotPermitted("only root changes the owner")
    if gid is not None and gid != node.gid and ctx.uid not in (0, node.uid):
        raise NotPermitted("only the owner or root changes the group")
    if mode is not None and ctx.uid not in (0, node.uid):
        raise NotPermitted("only the owner or root changes the mode")


def drops_setgid(node: Inode, ctx: Ctx, *, chown: bool) -> bool:
    """Whether a write or truncate (or, with ``chown``, a change of owner) by ``ctx`` drops
    ``node``'s set-group-ID bit, as Linux 6.x decides it: a write or truncate by root keeps
    every set-ID bit; otherwise the bit goes when the group may execute, and without
    group-execute when the caller is neither root nor in the file's group
    (``setattr_should_drop_sgid``). The kernel's FUSE client applies only the group-execute
    rule itself, so the file layer applies the rest (``ctx`` carries the primary group only:
    supplementary groups are not in the FUSE request)."""
    if node.is_dir or not node.mode & stat.S_ISGID:
        return False
    if ctx.uid == 0 and not chown:
        return False
    if node.mode & stat.S_IXGRP:
        return True
    return ctx.uid != 0 and ctx.gid != node.gid
