"""libyaml's events, made in C (issue 14).

PyYAML's libyaml binding (``yaml._yaml``) builds every event it hands to Python by
calling the event class it finds among its module globals, with positional
arguments, and PyYAML's classes then run an ``__init__`` in Python: ~400 k of
them for a 1,000-host input, ~5 % of a whole render's instructions.  While
:func:`events_in_c` is active, those globals are the classes below instead:
Exception subclasses, whose C constructor keeps the arguments as ``args`` and
runs no Python frame.

Only ``yaml._yaml``'s own event API reads those names (``CParser.get_event``,
and ``CEmitter.emit``, which ``yaml.dump`` with a C dumper uses); ``yaml.load``'s
composer and constructor, the pure-Python parser and the pure-Python dumper do
not.  The swap is undone on leaving, and swaps are serialized by a lock, so
envoygen's own parses never see each other's; a C dumper running in another
thread during a parse would.  Without libyaml, or with a binding laid out
otherwise, nothing is swapped and :func:`pyyaml_events_adapted` turns PyYAML's
events into these classes.  ``tests/test_load.py`` checks that both ways build
the same documents, positions and findings from every input of the tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml


# ``args`` holds what PyYAML's constructors take, in their order:
class Event(Exception):
    __slots__ = ()


class StreamStart(Event):  # (start_mark, end_mark, encoding)
    __slots__ = ()


class StreamEnd(Event):  # (start_mark, end_mark)
    __slots__ = ()


class DocStart(Event):  # (start_mark, end_mark, explicit, version, tags)
    __slots__ = ()


class DocEnd(Event):  # (start_mark, end_mark, explicit)
    __slots__ = ()


class Alias(Event):  # (anchor, start_mark, end_mark)
    __slots__ = ()


class Scalar(Event):  # (anchor, tag, (plain_implicit, quoted_implicit), value, start_mark, end_mark, style)
    __slots__ = ()


class SeqStart(Event):  # (anchor, tag, implicit, start_mark, end_mark, flow_style)
    __slots__ = ()


class MapStart(Event):  # (anchor, tag, implicit, start_mark, end_mark, flow_style)
    __slots__ = ()


class SeqEnd(Event):  # (start_mark, end_mark)
    __slots__ = ()


class MapEnd(Event):  # (start_mark, end_mark)
    __slots__ = ()


PYYAML_TO_OURS = {  # PyYAML's event class (its name in yaml._yaml) -> ours, with the attributes in args' order
    yaml.StreamStartEvent: (StreamStart, ("start_mark", "end_mark", "encoding")),
    yaml.StreamEndEvent: (StreamEnd, ("start_mark", "end_mark")),
    yaml.DocumentStartEvent: (DocStart, ("start_mark", "end_mark", "explicit", "version", "tags")),
    yaml.DocumentEndEvent: (DocEnd, ("start_mark", "end_mark", "explicit")),
    yaml.AliasEvent: (Alias, ("anchor", "start_mark", "end_mark")),
    yaml.ScalarEvent: (Scalar, ("anchor", "tag", "implicit", "value", "start_mark", "end_mark", "style")),
    yaml.SequenceStartEvent: (SeqStart, ("anchor", "tag", "implicit", "start_mark", "end_mark", "flow_style")),
    yaml.MappingStartEvent: (MapStart, ("anchor", "tag", "implicit", "start_mark", "end_mark", "flow_style")),
    yaml.SequenceEndEvent: (SeqEnd, ("start_mark", "end_mark")),
    yaml.MappingEndEvent: (MapEnd, ("start_mark", "end_mark")),
}
_START_AT = {ours: names.index("start_mark") for ours, names in PYYAML_TO_OURS.values()}
_SWAP = [(theirs.__name__, theirs, ours) for theirs, (ours, _) in PYYAML_TO_OURS.items()]  # (global, PyYAML's, ours)
_SWAP_LOCK = threading.Lock()


def start_of(ev: Event) -> Any:
    """The event's start mark (its line and column, 0-based)."""
    return ev.args[_START_AT[type(ev)]]


@contextmanager
def events_in_c() -> Iterator[None]:
    """While active, yaml._yaml makes this module's event classes (see above); undone on exit."""
    binding = getattr(yaml, "_yaml", None)
    with _SWAP_LOCK:
        if binding is None or not all(getattr(binding, name, None) is theirs for name, theirs, _ in _SWAP):
            yield  # no libyaml, or a binding laid out otherwise: PyYAML's events, adapted by pyyaml_events_adapted()
            return
        try:
            for name, _, ours in _SWAP:
                setattr(binding, name, ours)
            yield
        finally:
            for name, theirs, _ in _SWAP:
                setattr(binding, name, theirs)


def pyyaml_events_adapted(get_event: Callable[[], Any]) -> Callable[[], Event]:
    """``get_event`` returning this module's events for a parser that makes PyYAML's."""
    def get() -> Event:
        ev = get_event()
        ours, names = PYYAML_TO_OURS[type(ev)]
        return ours(*(getattr(ev, n) for n in names))
    return get
