// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using NpcRuntime.Protocol;

namespace NpcRuntime.Client
{
    /// <summary>
    /// OVR viseme → blendshape target weights (0..1). <see cref="ArKit"/> is clients/visemes/ovr_to_arkit.json;
    /// <see cref="Generic"/> drives one shape per viseme (<c>viseme_aa</c>, <c>viseme_PP</c>... as on Ready Player Me,
    /// Character Creator and Oculus-style rigs); <see cref="FromJson"/> loads your own table in the same format.
    /// </summary>
    public sealed class VisemeMapping
    {
        private readonly Dictionary<string, Dictionary<string, float>> _table;
        private readonly List<string> _shapes = new List<string>();
        private readonly float[][] _targets; // [viseme index][shape index]

        public VisemeMapping(IDictionary<string, Dictionary<string, float>> table)
        {
            if (table == null) throw new ArgumentNullException("table");
            _table = new Dictionary<string, Dictionary<string, float>>(StringComparer.Ordinal);
            foreach (var kv in table)
            {
                if (Visemes.IndexOf(kv.Key) < 0) throw new ArgumentException("unknown OVR viseme '" + kv.Key + "'");
                _table[kv.Key] = new Dictionary<string, float>(kv.Value, StringComparer.Ordinal);
                foreach (var shape in kv.Value.Keys)
                    if (!_shapes.Contains(shape)) _shapes.Add(shape);
            }
            _targets = new float[Visemes.Names.Length][];
            for (int v = 0; v < Visemes.Names.Length; v++)
            {
                _targets[v] = new float[_shapes.Count];
                Dictionary<string, float> weights;
                if (!_table.TryGetValue(Visemes.Names[v], out weights)) continue;
                foreach (var w in weights) _targets[v][_shapes.IndexOf(w.Key)] = Clamp01(w.Value);
            }
        }

        /// <summary>Every blendshape name the table uses, in a fixed order (the order of weight arrays).</summary>
        public IList<string> Shapes { get { return _shapes.AsReadOnly(); } }

        /// <summary>The target weights of a viseme, indexed like <see cref="Shapes"/> (all 0 for an unlisted one).</summary>
        public float[] Targets(string viseme)
        {
            int v = Visemes.IndexOf(viseme);
            if (v < 0) throw new ArgumentException("unknown OVR viseme '" + viseme + "'");
            return _targets[v];
        }

        /// <summary>The weight of <paramref name="shape"/> for <paramref name="viseme"/> (0 if unlisted).</summary>
        public float Weight(string viseme, string shape)
        {
            Dictionary<string, float> weights;
            float w;
            return _table.TryGetValue(viseme, out weights) && weights.TryGetValue(shape, out w) ? w : 0f;
        }

        private static float Clamp01(float x) { return x < 0f ? 0f : x > 1f ? 1f : x; }

        /// <summary>A table as JSON: <c>{"visemes": {"aa": {"jawOpen": 0.6, ...}, ...}}</c> (ovr_to_arkit.json's format).</summary>
        public static VisemeMapping FromJson(string json)
        {
            var root = new Fields(JsonReader.ParseObject(json), "mapping");
            var visemes = root.Obj("visemes");
            var table = new Dictionary<string, Dictionary<string, float>>();
            foreach (var kv in visemes.Object)
            {
                var weights = new Dictionary<string, float>();
                foreach (var w in visemes.NumberMap(kv.Key)) weights[w.Key] = (float)w.Value;
                table[kv.Key] = weights;
            }
            return new VisemeMapping(table);
        }

        /// <summary>One blendshape per viseme, named <paramref name="prefix"/> + the OVR name (<c>viseme_sil</c> at rest).</summary>
        public static VisemeMapping Generic(string prefix = "viseme_")
        {
            var table = new Dictionary<string, Dictionary<string, float>>();
            foreach (var v in Visemes.Names) table[v] = new Dictionary<string, float> { { prefix + v, 1f } };
            return new VisemeMapping(table);
        }

        /// <summary>ARKit blendshapes (clients/visemes/ovr_to_arkit.json).</summary>
        public static VisemeMapping ArKit
        {
            get
            {
                return new VisemeMapping(new Dictionary<string, Dictionary<string, float>>
                {
                    { "sil", new Dictionary<string, float> {  } },
                    { "PP", new Dictionary<string, float> { { "jawOpen", 0.08f }, { "mouthClose", 0.08f }, { "mouthPressLeft", 0.5f }, { "mouthPressRight", 0.5f }, { "mouthRollLower", 0.25f }, { "mouthRollUpper", 0.15f } } },
                    { "FF", new Dictionary<string, float> { { "jawOpen", 0.1f }, { "mouthRollLower", 0.6f }, { "mouthUpperUpLeft", 0.35f }, { "mouthUpperUpRight", 0.35f }, { "mouthPressLeft", 0.1f }, { "mouthPressRight", 0.1f } } },
                    { "TH", new Dictionary<string, float> { { "jawOpen", 0.18f }, { "tongueOut", 0.4f }, { "mouthLowerDownLeft", 0.15f }, { "mouthLowerDownRight", 0.15f }, { "mouthUpperUpLeft", 0.1f }, { "mouthUpperUpRight", 0.1f } } },
                    { "DD", new Dictionary<string, float> { { "jawOpen", 0.2f }, { "mouthLowerDownLeft", 0.2f }, { "mouthLowerDownRight", 0.2f }, { "mouthStretchLeft", 0.15f }, { "mouthStretchRight", 0.15f }, { "mouthUpperUpLeft", 0.1f }, { "mouthUpperUpRight", 0.1f } } },
                    { "kk", new Dictionary<string, float> { { "jawOpen", 0.28f }, { "mouthStretchLeft", 0.2f }, { "mouthStretchRight", 0.2f }, { "mouthLowerDownLeft", 0.15f }, { "mouthLowerDownRight", 0.15f } } },
                    { "CH", new Dictionary<string, float> { { "jawOpen", 0.15f }, { "mouthFunnel", 0.45f }, { "mouthPucker", 0.2f }, { "mouthUpperUpLeft", 0.25f }, { "mouthUpperUpRight", 0.25f }, { "mouthLowerDownLeft", 0.25f }, { "mouthLowerDownRight", 0.25f } } },
                    { "SS", new Dictionary<string, float> { { "jawOpen", 0.08f }, { "mouthStretchLeft", 0.35f }, { "mouthStretchRight", 0.35f }, { "mouthSmileLeft", 0.15f }, { "mouthSmileRight", 0.15f }, { "mouthUpperUpLeft", 0.15f }, { "mouthUpperUpRight", 0.15f }, { "mouthLowerDownLeft", 0.15f }, { "mouthLowerDownRight", 0.15f } } },
                    { "nn", new Dictionary<string, float> { { "jawOpen", 0.15f }, { "mouthStretchLeft", 0.1f }, { "mouthStretchRight", 0.1f }, { "mouthLowerDownLeft", 0.1f }, { "mouthLowerDownRight", 0.1f } } },
                    { "RR", new Dictionary<string, float> { { "jawOpen", 0.15f }, { "mouthPucker", 0.35f }, { "mouthFunnel", 0.25f }, { "mouthRollLower", 0.1f } } },
                    { "aa", new Dictionary<string, float> { { "jawOpen", 0.6f }, { "mouthLowerDownLeft", 0.3f }, { "mouthLowerDownRight", 0.3f }, { "mouthStretchLeft", 0.1f }, { "mouthStretchRight", 0.1f }, { "mouthUpperUpLeft", 0.1f }, { "mouthUpperUpRight", 0.1f } } },
                    { "E", new Dictionary<string, float> { { "jawOpen", 0.35f }, { "mouthStretchLeft", 0.3f }, { "mouthStretchRight", 0.3f }, { "mouthSmileLeft", 0.15f }, { "mouthSmileRight", 0.15f }, { "mouthLowerDownLeft", 0.2f }, { "mouthLowerDownRight", 0.2f }, { "mouthUpperUpLeft", 0.1f }, { "mouthUpperUpRight", 0.1f } } },
                    { "ih", new Dictionary<string, float> { { "jawOpen", 0.2f }, { "mouthSmileLeft", 0.35f }, { "mouthSmileRight", 0.35f }, { "mouthStretchLeft", 0.25f }, { "mouthStretchRight", 0.25f }, { "mouthUpperUpLeft", 0.1f }, { "mouthUpperUpRight", 0.1f } } },
                    { "oh", new Dictionary<string, float> { { "jawOpen", 0.4f }, { "mouthFunnel", 0.5f }, { "mouthPucker", 0.25f }, { "mouthLowerDownLeft", 0.1f }, { "mouthLowerDownRight", 0.1f } } },
                    { "ou", new Dictionary<string, float> { { "jawOpen", 0.15f }, { "mouthPucker", 0.7f }, { "mouthFunnel", 0.4f } } },                });
            }
        }
    }

    /// <summary>
    /// Turns the viseme under the audio clock into smoothed blendshape weights, per the advice in
    /// clients/visemes/README.md: a short lookahead (lips move before the sound), exponential easing with separate
    /// attack and release time constants, short <c>sil</c> gaps bridged, a per-character intensity. Engine-independent:
    /// call <see cref="Update"/> once a frame and copy <see cref="Weights"/> to the rig.
    /// </summary>
    public sealed class VisemeBlender
    {
        private readonly VisemeMapping _mapping;
        private readonly float[] _weights;

        /// <summary>Time constant (ms) of a weight rising towards its target.</summary>
        public float AttackMs = 35f;
        /// <summary>Time constant (ms) of a weight falling towards its target.</summary>
        public float ReleaseMs = 60f;
        /// <summary>How far ahead of the audio clock the mouth looks (ms).</summary>
        public float LookaheadMs = 30f;
        /// <summary><c>sil</c> cues shorter than this (between words) are bridged: the mouth eases to the next viseme.</summary>
        public float BridgeSilMs = 80f;
        /// <summary>Scale of every target weight (0.6–1.0 suits most characters).</summary>
        public float Intensity = 1f;

        public VisemeBlender(VisemeMapping mapping)
        {
            if (mapping == null) throw new ArgumentNullException("mapping");
            _mapping = mapping;
            _weights = new float[mapping.Shapes.Count];
        }

        public VisemeMapping Mapping { get { return _mapping; } }
        /// <summary>Current weights (0..1), indexed like <see cref="VisemeMapping.Shapes"/>.</summary>
        public float[] Weights { get { return _weights; } }
        /// <summary>The viseme the weights are easing towards.</summary>
        public string Current { get; private set; }

        /// <summary>The viseme to show at <paramref name="clockMs"/>: the cue under clock + lookahead, a short
        /// <c>sil</c> replaced by the cue after it; <c>sil</c> outside the cues.</summary>
        public string Select(IList<VisemeCue> cues, double clockMs)
        {
            double t = clockMs + LookaheadMs;
            int lo = 0, hi = cues.Count - 1, found = -1;
            while (lo <= hi)
            {
                int mid = (lo + hi) / 2;
                if (t < cues[mid].StartMs) hi = mid - 1;
                else if (t >= cues[mid].EndMs) lo = mid + 1;
                else { found = mid; break; }
            }
            if (found < 0) return "sil";
            var cue = cues[found];
            if (cue.Viseme == "sil" && cue.EndMs - cue.StartMs < BridgeSilMs && found > 0 && found + 1 < cues.Count)
                return cues[found + 1].Viseme;
            return cue.Viseme;
        }

        /// <summary>Ease every weight towards <paramref name="viseme"/>'s targets over <paramref name="deltaMs"/>.</summary>
        public void Update(string viseme, float deltaMs)
        {
            Current = viseme ?? "sil";
            float[] targets = _mapping.Targets(Current);
            if (deltaMs < 0f) deltaMs = 0f;
            for (int i = 0; i < _weights.Length; i++)
            {
                float target = targets[i] * Intensity;
                float tau = target > _weights[i] ? AttackMs : ReleaseMs;
                float k = tau <= 0f ? 1f : 1f - (float)Math.Exp(-deltaMs / tau);
                float w = _weights[i] + (target - _weights[i]) * k;
                _weights[i] = w < 0f ? 0f : w > 1f ? 1f : w;
            }
        }

        /// <summary>Snap every weight to 0 (the rest pose) at once.</summary>
        public void Reset()
        {
            Array.Clear(_weights, 0, _weights.Length);
            Current = "sil";
        }
    }
}
