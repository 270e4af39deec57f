"""The connection's states and their transitions, as a pure table."""

from __future__ import annotations

import enum

from npc_runtime.errors import ProtocolError


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    IDLE = "idle"
    RESPONDING = "responding"
    CLOSED = "closed"


class Trigger(enum.Enum):
    START = "start"
    RESPOND = "respond"
    DONE = "done"
    CLOSE = "close"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.AWAITING_START, Trigger.START): State.IDLE,
    (State.IDLE, Trigger.RESPOND): State.RESPONDING,
    (State.RESPONDING, Trigger.RESPOND): State.RESPONDING,
    (State.RESPONDING, Trigger.DONE): State.IDLE,
    (State.IDLE, Trigger.DONE): State.IDLE,
    (State.AWAITING_START, Trigger.CLOSE): State.CLOSED,
    (State.IDLE, Trigger.CLOSE): State.CLOSED,
    (State.RESPONDING, Trigger.CLOSE): State.CLOSED,
    (State.CLOSED, Trigger.CLOSE): State.CLOSED,
}


def next_state(state: State, trigger: Trigger) -> State:
    """The pure transition function; raises :class:`ProtocolError` for an illegal move."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise ProtocolError(f"{trigger.value} is not allowed in state {state.value}", code="bad_state") from None
