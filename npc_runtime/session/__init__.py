"""One conversation, split by concern (issue 16):

- :mod:`.connection` — :class:`Session`: the connection's state machine, ordered outbox and message dispatch;
- :mod:`.character` — :class:`~.character.Character`: one character's persona, scene view, history and engine
  warm-up (the session's own and each cast member);
- :mod:`.remembering` — what a character remembers of the player (read at the start, written as it settles);
- :mod:`.response` — :class:`~.response.Response`: one response, its status, its events;
- :mod:`.voice_out` — the voice step: the dialogue stream with each clause's audio after its text;
- :mod:`.ledger` — the heard-audio ledger: what was sent, what the client played, what the player heard;
- :mod:`.voice_input` — the listener, ``speech.*``/``transcript.*`` events, barge-in on the listener's events;
- :mod:`.converse` — characters talking among themselves;
- :mod:`.latency` — the latency policy, as pure functions;
- :mod:`.services` and :mod:`.states` — what a session needs from the runtime, and the state table.
"""

from npc_runtime.session.connection import Session
from npc_runtime.session.response import Outgoing, Passthrough
from npc_runtime.session.services import PersonaSource, Services
from npc_runtime.session.states import TRANSITIONS, State, Trigger, next_state

__all__ = ["TRANSITIONS", "Outgoing", "Passthrough", "PersonaSource", "Services", "Session", "State", "Trigger", "next_state"]
