// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using NpcRuntime.Protocol;

namespace NpcRuntime.Client
{
    /// <summary>What <see cref="ReplyPlayer.Update"/> found since the last call.</summary>
    public sealed class PlaybackFrame
    {
        /// <summary>Cues whose time came, in order: perform actions and emotions, and note visemes.</summary>
        public readonly List<TimelineCue> Cues = new List<TimelineCue>();
        /// <summary>Marks to send (<c>playback.mark</c>): periodic while playing, and one when a reply stops or ends.</summary>
        public readonly List<PlaybackMark> Marks = new List<PlaybackMark>();
        /// <summary>Replies stopped before their end (barge-in, cancel, a newer response): their skipped cues are dropped.</summary>
        public readonly List<string> Stopped = new List<string>();
        /// <summary>Replies whose audio played to the end.</summary>
        public readonly List<string> Finished = new List<string>();
        /// <summary>The reply playing now (null when idle), its timeline and its clock (ms of its audio heard).</summary>
        public string ResponseId;
        public PlaybackTimeline Timeline;
        public double ClockMs;
    }

    /// <summary>
    /// Engine-independent playback of the replies' audio with their cues on the audio clock.
    /// <para>The game's main thread calls <see cref="Feed"/> with every server event and <see cref="Update"/> once a
    /// frame; the audio thread calls <see cref="Read"/> to fill the device buffer (Unity: <c>OnAudioFilterRead</c>).
    /// The audio clock of a reply is the number of its samples handed to the device minus
    /// <see cref="OutputLatencyMs"/>, so the mouth and the actions follow what is heard, also when audio stalls.</para>
    /// <para>Replies play one after another (a <c>scene.converse</c> queues its lines). A reply stops at once on
    /// <c>response.interrupted</c>, on <c>response.end</c> with status <c>interrupted</c>, on a newer response that is not
    /// a converse line, or on <see cref="Stop"/>; its unreached cues are skipped and a last mark is produced.</para>
    /// </summary>
    public sealed class ReplyPlayer
    {
        private sealed class Reply
        {
            public string Id;
            public PlaybackTimeline Timeline;
            public readonly Queue<float[]> Chunks = new Queue<float[]>();
            public int ChunkPos;
            public long QueuedSamples;  // output-rate samples received (audio thread reads under the lock)
            public long PlayedSamples;  // output-rate samples handed to the device
            public long LastSampleAt;   // device position just after its last sample handed so far
            public bool Ended;          // response.end received: no more audio comes
            public bool Stopped;
            public Resampler Resampler;
            public double LastMarkMs = double.NegativeInfinity;
        }

        private readonly object _lock = new object();
        private readonly List<Reply> _queue = new List<Reply>();       // in play order; [0] is current
        private readonly HashSet<string> _gone = new HashSet<string>(); // replies finished or stopped: later events ignored
        private readonly PlaybackFrame _pendingStops = new PlaybackFrame();
        private long _devicePos; // frames handed to the device in all (silence included)

        public ReplyPlayer(int outputSampleRate)
        {
            if (outputSampleRate <= 0) throw new ArgumentException("outputSampleRate must be positive");
            OutputSampleRate = outputSampleRate;
            MarkIntervalMs = 250;
        }

        /// <summary>The rate of the samples <see cref="Read"/> produces (the device's).</summary>
        public int OutputSampleRate { get; private set; }
        /// <summary>Time from handing samples to the device to hearing them (Unity: the DSP buffers).</summary>
        public double OutputLatencyMs { get; set; }
        /// <summary>How often to mark progress while playing (the protocol asks for a few times a second).</summary>
        public double MarkIntervalMs { get; set; }

        /// <summary>True while some reply has audio queued or playing.</summary>
        public bool IsPlaying
        {
            get { lock (_lock) { foreach (var r in _queue) if (!r.Stopped && r.PlayedSamples < r.QueuedSamples) return true; } return false; }
        }

        /// <summary>Take a server event (main thread). Unrelated events are ignored.</summary>
        public void Feed(ServerEvent ev)
        {
            var start = ev as ResponseStart;
            if (start != null)
            {
                if (_gone.Contains(start.ResponseId)) return;
                if (start.Trigger != "converse")
                    foreach (var r in SnapshotQueue()) StopReply(r, _pendingStops);
                ReplyFor(start.ResponseId);
                return;
            }
            var re = ev as ResponseEvent;
            if (re == null || _gone.Contains(re.ResponseId)) return;
            if (ev is ResponseInterrupted) { Stop(re.ResponseId); return; }
            var reply = ReplyFor(re.ResponseId);
            var end = ev as ResponseEnd;
            if (end != null)
            {
                if (end.Status == "interrupted") Stop(re.ResponseId);
                else lock (_lock) reply.Ended = true;
                return;
            }
            reply.Timeline.Add(ev);
            var chunk = ev as AudioChunk;
            if (chunk != null && chunk.Pcm != null && chunk.Pcm.Length > 0)
            {
                float[] samples = Pcm16.ToFloats(chunk.Pcm);
                if (chunk.SampleRate != OutputSampleRate)
                {
                    if (reply.Resampler == null || reply.Resampler.FromRate != chunk.SampleRate)
                        reply.Resampler = new Resampler(chunk.SampleRate, OutputSampleRate);
                    samples = reply.Resampler.Process(samples, 0, samples.Length);
                }
                lock (_lock)
                {
                    reply.Chunks.Enqueue(samples);
                    reply.QueuedSamples += samples.Length;
                }
            }
        }

        private Reply ReplyFor(string id)
        {
            lock (_lock)
            {
                foreach (var r in _queue) if (r.Id == id) return r;
                var reply = new Reply { Id = id, Timeline = new PlaybackTimeline(id) };
                _queue.Add(reply);
                return reply;
            }
        }

        private List<Reply> SnapshotQueue() { lock (_lock) return new List<Reply>(_queue); }

        /// <summary>Stop a reply now (barge-in, cancel): its audio is dropped, its unreached cues skipped. Null: every
        /// reply. The last marks come with the next <see cref="Update"/>.</summary>
        public void Stop(string responseId = null)
        {
            foreach (var r in SnapshotQueue())
                if (responseId == null || r.Id == responseId) StopReply(r, _pendingStops);
        }

        private void StopReply(Reply r, PlaybackFrame into)
        {
            double clock;
            long played;
            lock (_lock)
            {
                if (r.Stopped) return;
                r.Stopped = true;
                r.Chunks.Clear();
                played = r.PlayedSamples;
                clock = ClockOf(r);
                _queue.Remove(r);
            }
            _gone.Add(r.Id);
            r.Timeline.Interrupt();
            into.Stopped.Add(r.Id);
            if (played > 0) into.Marks.Add(new PlaybackMark(r.Id, Math.Max(0, Math.Min(clock, r.Timeline.AudioEndMs))));
        }

        /// <summary>Ms of a reply's audio heard (call under the lock): what was handed to the device less the
        /// latency still in flight. When its audio stalls or ends, the silence after its last sample drains the
        /// latency, so the clock reaches the end of what was played.</summary>
        private double ClockOf(Reply r)
        {
            double sinceLastMs = (_devicePos - r.LastSampleAt) * 1000.0 / OutputSampleRate;
            return r.PlayedSamples * 1000.0 / OutputSampleRate - Math.Max(0, OutputLatencyMs - sinceLastMs);
        }

        /// <summary>Advance the clock of the playing reply and collect what is due (main thread, once a frame).</summary>
        public PlaybackFrame Update()
        {
            var frame = new PlaybackFrame();
            frame.Marks.AddRange(_pendingStops.Marks);
            frame.Stopped.AddRange(_pendingStops.Stopped);
            _pendingStops.Marks.Clear();
            _pendingStops.Stopped.Clear();
            while (true)
            {
                Reply r;
                long played, queued;
                bool ended;
                double heard;
                bool drained; // every sample handed to the device, and the latency after the last one elapsed
                lock (_lock)
                {
                    if (_queue.Count == 0) return frame;
                    r = _queue[0];
                    played = r.PlayedSamples;
                    queued = r.QueuedSamples;
                    ended = r.Ended;
                    heard = ClockOf(r);
                    drained = played >= queued && (_devicePos - r.LastSampleAt) * 1000.0 / OutputSampleRate >= OutputLatencyMs;
                }
                bool hasAudio = queued > 0;
                double clock = played > 0 ? heard
                             : ended && !hasAudio ? double.PositiveInfinity   // no audio at all: everything at once
                             : double.NegativeInfinity;                       // not started: only cues without at_ms
                frame.Cues.AddRange(r.Timeline.Advance(clock));
                bool done = ended && (hasAudio ? drained : played >= queued);
                if (!done)
                {
                    frame.ResponseId = r.Id;
                    frame.Timeline = r.Timeline;
                    frame.ClockMs = Math.Max(0, clock);
                    if (played > 0 && clock - r.LastMarkMs >= MarkIntervalMs)
                    {
                        r.LastMarkMs = clock;
                        frame.Marks.Add(new PlaybackMark(r.Id, Math.Max(0, Math.Min(clock, r.Timeline.AudioEndMs))));
                    }
                    return frame;
                }
                frame.Cues.AddRange(r.Timeline.Flush());
                if (hasAudio) frame.Marks.Add(new PlaybackMark(r.Id, r.Timeline.AudioEndMs));
                frame.Finished.Add(r.Id);
                lock (_lock) _queue.Remove(r);
                _gone.Add(r.Id);
            }
        }

        /// <summary>Fill <paramref name="count"/> interleaved samples of <paramref name="channels"/> channels from
        /// the playing reply (audio thread); silence where there is nothing to play. Never blocks on the network.</summary>
        public void Read(float[] data, int offset, int count, int channels)
        {
            if (channels < 1) channels = 1;
            int frames = count / channels;
            int f = 0;
            lock (_lock)
            {
                foreach (var r in _queue)
                {
                    if (f >= frames) break;
                    if (r.Stopped) continue;
                    while (f < frames && r.Chunks.Count > 0)
                    {
                        float[] chunk = r.Chunks.Peek();
                        int n = Math.Min(frames - f, chunk.Length - r.ChunkPos);
                        for (int i = 0; i < n; i++)
                        {
                            float s = chunk[r.ChunkPos + i];
                            int at = offset + (f + i) * channels;
                            for (int c = 0; c < channels; c++) data[at + c] = s;
                        }
                        f += n;
                        r.ChunkPos += n;
                        r.PlayedSamples += n;
                        r.LastSampleAt = _devicePos + f;
                        if (r.ChunkPos >= chunk.Length) { r.Chunks.Dequeue(); r.ChunkPos = 0; }
                    }
                    if (!r.Ended || r.PlayedSamples < r.QueuedSamples) break; // starving: wait for its audio, don't skip ahead
                }
                _devicePos += frames;
            }
            Array.Clear(data, offset + f * channels, count - f * channels);
        }
    }
}
