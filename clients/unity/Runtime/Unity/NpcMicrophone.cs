// SPDX-License-Identifier: MIT
using System;
using NpcRuntime.Client;
using NpcRuntime.Protocol;
using UnityEngine;

namespace NpcRuntime.Unity
{
    /// <summary>
    /// Streams the microphone to the character as PCM16 mono 16 kHz frames. Push-to-talk: call
    /// <see cref="BeginTalking"/> when the key or button goes down and <see cref="EndTalking"/> when it comes up (that
    /// sends <c>input.audio.commit</c>: the turn ends at once). Open mic: set <see cref="alwaysOn"/> and the server
    /// decides the end of each turn from the silence, and barge-in when the player talks over the character.
    /// </summary>
    [AddComponentMenu("NPC Runtime/NPC Microphone")]
    public sealed class NpcMicrophone : MonoBehaviour
    {
        [Tooltip("The character to talk to.")]
        public NpcCharacter character;
        [Tooltip("Microphone device name; empty: the default device.")]
        public string deviceName;
        [Tooltip("Stream all the time (server-side end of turn and barge-in) instead of push-to-talk.")]
        public bool alwaysOn;
        [Range(20, 100), Tooltip("Length of each audio frame sent (ms).")]
        public int frameMs = 40;

        private AudioClip _clip;
        private string _device;
        private int _lastPosition;
        private bool _talking;
        private Resampler _resampler;
        private float[] _pending = new float[0];
        private int _pendingCount;

        /// <summary>True while audio is being sent.</summary>
        public bool IsStreaming { get { return _clip != null && (_talking || alwaysOn); } }

        private void OnEnable()
        {
            if (Microphone.devices.Length == 0)
            {
                Debug.LogWarning("NpcMicrophone: no microphone", this);
                return;
            }
            _device = string.IsNullOrEmpty(deviceName) ? null : deviceName;
            int min, max;
            Microphone.GetDeviceCaps(_device, out min, out max);
            int rate = (min == 0 && max == 0) || (min <= Pcm16.ServerInputRate && Pcm16.ServerInputRate <= max) ? Pcm16.ServerInputRate : max;
            _clip = Microphone.Start(_device, true, 1, rate); // a 1 s ring, read every frame
            _lastPosition = 0;
            _resampler = new Resampler(_clip.frequency, Pcm16.ServerInputRate);
        }

        private void OnDisable()
        {
            if (_clip != null) Microphone.End(_device);
            _clip = null;
        }

        /// <summary>Push-to-talk pressed: start sending. Talking over the character for longer than the server's
        /// <c>barge_in_ms</c> interrupts it (<c>response.interrupted</c>).</summary>
        public void BeginTalking()
        {
            _talking = true;
            _pendingCount = 0;
        }

        /// <summary>Push-to-talk released: send what is left and end the turn (<c>input.audio.commit</c>).</summary>
        public void EndTalking()
        {
            if (!_talking) return;
            Pump();
            Flush();
            _talking = false;
            if (character != null && character.IsReady) character.Connection.Send(new AudioCommit());
        }

        private void Update() { Pump(); }

        /// <summary>Read what the microphone recorded since the last frame and send it in whole frames.</summary>
        private void Pump()
        {
            if (_clip == null) return;
            int position = Microphone.GetPosition(_device);
            if (position == _lastPosition) return;
            float[] samples = ReadRing(_lastPosition, position);
            _lastPosition = position;
            if (!IsStreaming || character == null || !character.IsReady) return;
            if (_clip.channels > 1) samples = Pcm16.ToMono(samples, _clip.channels);
            float[] resampled = _resampler.Process(samples, 0, samples.Length);
            int frame = Pcm16.ServerInputRate * frameMs / 1000;
            if (_pending.Length < frame + resampled.Length) Array.Resize(ref _pending, frame + resampled.Length);
            Array.Copy(resampled, 0, _pending, _pendingCount, resampled.Length);
            _pendingCount += resampled.Length;
            int sent = 0;
            while (_pendingCount - sent >= frame)
            {
                Send(sent, frame);
                sent += frame;
            }
            Array.Copy(_pending, sent, _pending, 0, _pendingCount - sent);
            _pendingCount -= sent;
        }

        private void Flush()
        {
            if (_pendingCount > 0 && character != null && character.IsReady) Send(0, _pendingCount);
            _pendingCount = 0;
        }

        private void Send(int offset, int count)
        {
            byte[] pcm = Pcm16.FromFloats(_pending, offset, count);
            character.Connection.SendAudio(pcm, 0, pcm.Length);
        }

        private float[] ReadRing(int from, int to)
        {
            int length = _clip.samples;
            int count = to >= from ? to - from : length - from + to;
            var data = new float[count * _clip.channels];
            if (to >= from || from + count <= length)
            {
                if (count > 0) _clip.GetData(data, from);
                return data;
            }
            var head = new float[(length - from) * _clip.channels];
            var tail = new float[to * _clip.channels];
            _clip.GetData(head, from);
            if (tail.Length > 0) _clip.GetData(tail, 0);
            Array.Copy(head, data, head.Length);
            Array.Copy(tail, 0, data, head.Length, tail.Length);
            return data;
        }
    }
}
