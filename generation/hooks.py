"""Register forward hooks for the length of a ``with`` block, and always remove them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

from torch.utils.hooks import RemovableHandle


@contextmanager
def hooks_registered(handles: Iterable[RemovableHandle]) -> Iterator[None]:
    """Keep the hooks behind ``handles`` while the context is open; remove each one on exit.

    Pass a generator of ``module.register_forward_hook(...)`` calls: each hook is then
    registered inside the context, so one that fails to register, or a body that raises,
    still leaves the model without any of them.
    """
    with ExitStack() as stack:
        for handle in handles:
            stack.enter_context(handle)
        yield
