// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using NpcRuntime.Protocol;

namespace NpcRuntime.Client
{
    public enum CueKind { Viseme, Action, Emotion }

    /// <summary>Something to show at a point of a response's audio timeline.</summary>
    public sealed class TimelineCue
    {
        public CueKind Kind { get; internal set; }
        /// <summary>Audio time (ms from the response's first sample) at which it happens.
        /// <see cref="double.NegativeInfinity"/>: at once (an action or emotion with no <c>at_ms</c>).</summary>
        public double AtMs { get; internal set; }
        public string ResponseId { get; internal set; }
        public VisemeCue Viseme { get; internal set; }
        public ActionEvent Action { get; internal set; }
        public EmotionEvent Emotion { get; internal set; }
        internal long Order;

        public override string ToString()
        {
            switch (Kind)
            {
                case CueKind.Viseme: return "viseme:" + Viseme.Viseme + "@" + AtMs;
                case CueKind.Action: return "action:" + Action.Verb + "@" + AtMs;
                default: return "emotion:" + Emotion.Emotion + "@" + AtMs;
            }
        }
    }

    /// <summary>
    /// The cues of one response (visemes, actions, emotions) released in order as its audio clock advances.
    /// Engine-independent and single-threaded: feed it and advance it from one thread (a game's main thread).
    /// <code>
    /// timeline.Add(ev);                              // AudioChunk, ActionEvent, EmotionEvent of this response
    /// foreach (var cue in timeline.Advance(clock))   // clock: ms of this response's audio played
    ///     Perform(cue);
    /// </code>
    /// </summary>
    public sealed class PlaybackTimeline
    {
        private readonly List<TimelineCue> _pending = new List<TimelineCue>(); // sorted by AtMs, then arrival
        private readonly List<VisemeCue> _visemes = new List<VisemeCue>();    // every viseme, in time order
        private long _order;

        public PlaybackTimeline(string responseId)
        {
            if (responseId == null) throw new ArgumentNullException("responseId");
            ResponseId = responseId;
            ClockMs = double.NegativeInfinity;
        }

        public string ResponseId { get; private set; }
        /// <summary>The clock of the last <see cref="Advance"/> (never goes back).</summary>
        public double ClockMs { get; private set; }
        /// <summary>End of the audio received so far, on the response's timeline (ms).</summary>
        public double AudioEndMs { get; private set; }
        /// <summary>True after <see cref="Interrupt"/>: nothing more is added or released.</summary>
        public bool Interrupted { get; private set; }
        /// <summary>Cues not yet released.</summary>
        public int PendingCount { get { return _pending.Count; } }
        /// <summary>All viseme cues received, in time order (for lookahead and smoothing).</summary>
        public IList<VisemeCue> VisemeCues { get { return _visemes.AsReadOnly(); } }

        /// <summary>Take the cues of an event of this response; other events are ignored. Returns true if it had cues.</summary>
        public bool Add(ServerEvent ev)
        {
            if (Interrupted || ev == null || ev.ResponseId != ResponseId) return false;
            var chunk = ev as AudioChunk;
            if (chunk != null)
            {
                foreach (var v in chunk.Visemes)
                {
                    Insert(new TimelineCue { Kind = CueKind.Viseme, AtMs = v.StartMs, Viseme = v });
                    InsertViseme(v);
                }
                AudioEndMs = Math.Max(AudioEndMs, chunk.StartMs + chunk.DurationMs);
                return true;
            }
            var action = ev as ActionEvent;
            if (action != null)
            {
                Insert(new TimelineCue { Kind = CueKind.Action, AtMs = action.AtMs ?? double.NegativeInfinity, Action = action });
                return true;
            }
            var emotion = ev as EmotionEvent;
            if (emotion != null)
            {
                Insert(new TimelineCue { Kind = CueKind.Emotion, AtMs = emotion.AtMs ?? double.NegativeInfinity, Emotion = emotion });
                return true;
            }
            return false;
        }

        private void Insert(TimelineCue cue)
        {
            cue.ResponseId = ResponseId;
            cue.Order = _order++;
            int i = _pending.Count; // usually appended: cues arrive in time order
            while (i > 0 && _pending[i - 1].AtMs > cue.AtMs) i--;
            _pending.Insert(i, cue);
        }

        private void InsertViseme(VisemeCue v)
        {
            int i = _visemes.Count;
            while (i > 0 && _visemes[i - 1].StartMs > v.StartMs) i--;
            _visemes.Insert(i, v);
        }

        /// <summary>Move the clock to <paramref name="playedMs"/> (ms of this response's audio heard) and return the
        /// cues it reached, in time order (ties: arrival order). A clock that goes back is ignored.</summary>
        public List<TimelineCue> Advance(double playedMs)
        {
            var due = new List<TimelineCue>();
            if (Interrupted) return due;
            if (playedMs > ClockMs) ClockMs = playedMs;
            int n = 0;
            while (n < _pending.Count && _pending[n].AtMs <= ClockMs) n++;
            due.AddRange(_pending.GetRange(0, n));
            _pending.RemoveRange(0, n);
            return due;
        }

        /// <summary>The audio has played to its end: release every cue left (e.g. an action placed after the last
        /// audio because speech synthesis failed), in order.</summary>
        public List<TimelineCue> Flush()
        {
            var due = new List<TimelineCue>(_pending);
            _pending.Clear();
            return due;
        }

        /// <summary>Barge-in or cancel: drop every cue not reached. Returns the skipped cues.</summary>
        public List<TimelineCue> Interrupt()
        {
            Interrupted = true;
            var skipped = new List<TimelineCue>(_pending);
            _pending.Clear();
            return skipped;
        }

        /// <summary>The viseme cue covering <paramref name="ms"/>, or null (before the first / after the last).</summary>
        public VisemeCue VisemeAt(double ms)
        {
            int i = IndexAt(ms);
            return i < 0 ? null : _visemes[i];
        }

        /// <summary>Index in <see cref="VisemeCues"/> of the cue covering <paramref name="ms"/>, or -1.</summary>
        public int IndexAt(double ms)
        {
            int lo = 0, hi = _visemes.Count - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) / 2;
                var c = _visemes[mid];
                if (ms < c.StartMs) hi = mid - 1;
                else if (ms >= c.EndMs) lo = mid + 1;
                else return mid;
            }
            return -1;
        }
    }
}
