// SPDX-License-Identifier: MIT
using System.Collections.Generic;
using NpcRuntime.Client;
using UnityEngine;

namespace NpcRuntime.Unity
{
    public enum NpcVisemeRig
    {
        /// <summary>ARKit blendshape names (jawOpen, mouthFunnel...): MetaHuman via ARKit, Ready Player Me, VRM perfect sync.</summary>
        ArKit,
        /// <summary>One blendshape per OVR viseme: <c>viseme_aa</c>, <c>viseme_PP</c>... (Oculus, Ready Player Me, CC).</summary>
        Generic,
        /// <summary>Your own table (a TextAsset in clients/visemes/ovr_to_arkit.json's format).</summary>
        Custom,
    }

    /// <summary>
    /// Moves a face's blendshapes from the reply's viseme cues, on the audio clock (so the mouth stays on the sound),
    /// with lookahead, attack/release smoothing and bridged short silences (<see cref="VisemeBlender"/>).
    /// </summary>
    [AddComponentMenu("NPC Runtime/NPC Viseme Driver")]
    public sealed class NpcVisemeDriver : MonoBehaviour
    {
        public SkinnedMeshRenderer face;
        public NpcVisemeRig rig = NpcVisemeRig.ArKit;
        [Tooltip("Generic rig: the blendshape name before the OVR viseme name.")]
        public string genericPrefix = "viseme_";
        [Tooltip("Custom rig: {\"visemes\": {\"aa\": {\"shapeName\": 0.6, ...}, ...}}")]
        public TextAsset customMapping;
        [Range(0f, 1f)] public float intensity = 0.9f;
        [Range(1f, 200f)] public float attackMs = 35f;
        [Range(1f, 300f)] public float releaseMs = 60f;
        [Range(0f, 120f)] public float lookaheadMs = 30f;
        [Range(0f, 200f)] public float bridgeSilenceMs = 80f;
        [Tooltip("Blendshape weight at full strength (Unity's default range is 0..100).")]
        public float weightScale = 100f;

        private VisemeBlender _blender;
        private int[] _shapeIndex; // mapping shape → blendshape index on the mesh (-1: absent)

        private void Awake()
        {
            VisemeMapping mapping = rig == NpcVisemeRig.Generic ? VisemeMapping.Generic(genericPrefix)
                                  : rig == NpcVisemeRig.Custom && customMapping != null ? VisemeMapping.FromJson(customMapping.text)
                                  : VisemeMapping.ArKit;
            _blender = new VisemeBlender(mapping);
            _shapeIndex = ResolveShapes(mapping.Shapes);
        }

        private int[] ResolveShapes(IList<string> shapes)
        {
            var indices = new int[shapes.Count];
            Mesh mesh = face != null ? face.sharedMesh : null;
            var missing = new List<string>();
            for (int i = 0; i < shapes.Count; i++)
            {
                indices[i] = mesh != null ? FindShape(mesh, shapes[i]) : -1;
                if (indices[i] < 0) missing.Add(shapes[i]);
            }
            if (mesh == null) Debug.LogWarning("NpcVisemeDriver: no face SkinnedMeshRenderer with a mesh", this);
            else if (missing.Count > 0) Debug.LogWarning("NpcVisemeDriver: the face has no blendshape " + string.Join(", ", missing.ToArray()), this);
            return indices;
        }

        /// <summary>An exact name, else one ending in ".name" or "_name" (exporters prefix names), case-insensitive.</summary>
        private static int FindShape(Mesh mesh, string shape)
        {
            int exact = mesh.GetBlendShapeIndex(shape);
            if (exact >= 0) return exact;
            string lower = shape.ToLowerInvariant();
            for (int i = 0; i < mesh.blendShapeCount; i++)
            {
                string n = mesh.GetBlendShapeName(i).ToLowerInvariant();
                if (n == lower || n.EndsWith("." + lower) || n.EndsWith("_" + lower)) return i;
            }
            return -1;
        }

        /// <summary>Ease the mouth towards the viseme under <paramref name="clockMs"/> of <paramref name="timeline"/>
        /// (null: towards rest). Called by <see cref="NpcCharacter"/> every frame.</summary>
        public void Drive(PlaybackTimeline timeline, double clockMs, float deltaSeconds)
        {
            if (_blender == null || face == null) return;
            _blender.Intensity = intensity;
            _blender.AttackMs = attackMs;
            _blender.ReleaseMs = releaseMs;
            _blender.LookaheadMs = lookaheadMs;
            _blender.BridgeSilMs = bridgeSilenceMs;
            string viseme = timeline != null ? _blender.Select(timeline.VisemeCues, clockMs) : "sil";
            _blender.Update(viseme, deltaSeconds * 1000f);
            float[] weights = _blender.Weights;
            for (int i = 0; i < weights.Length; i++)
                if (_shapeIndex[i] >= 0) face.SetBlendShapeWeight(_shapeIndex[i], weights[i] * weightScale);
        }
    }
}
