// SPDX-License-Identifier: MIT
using System.Collections.Generic;
using NpcRuntime.Protocol;
using UnityEngine;

namespace NpcRuntime.Unity
{
    public enum NpcEntityKind { Object, Location, Character }

    /// <summary>
    /// Declares a GameObject to the character: something it can grab or give (Object), go to (Location) or give
    /// to (Character). <see cref="NpcCharacter"/> builds the session's scene from these, and action handlers find
    /// the GameObject of an id with <see cref="Find"/>.
    /// </summary>
    [AddComponentMenu("NPC Runtime/NPC Scene Entity")]
    public sealed class NpcSceneEntity : MonoBehaviour
    {
        private static readonly Dictionary<string, NpcSceneEntity> Registry = new Dictionary<string, NpcSceneEntity>();

        [Tooltip("Lowercase words joined by _ (e.g. ramen_bowl), unique in the scene. Empty: derived from the GameObject's name.")]
        public string id;
        public NpcEntityKind kind = NpcEntityKind.Object;
        [Tooltip("Optional display name (for characters: how they are called).")]
        public string displayName;
        [TextArea, Tooltip("Goes into the prompt: describe it so the model picks the right id.")]
        public string description;

        /// <summary>The id sent to the server.</summary>
        public string EntityId { get { return string.IsNullOrEmpty(id) ? IdFromName(name) : id; } }

        private void OnEnable() { Registry[EntityId] = this; }

        private void OnDisable()
        {
            NpcSceneEntity current;
            if (Registry.TryGetValue(EntityId, out current) && current == this) Registry.Remove(EntityId);
        }

        private void OnValidate()
        {
            if (!string.IsNullOrEmpty(id) && !SceneEntity.IsValidId(id))
                Debug.LogWarning("NpcSceneEntity '" + name + "': id '" + id + "' must match ^[a-z][a-z0-9_]{0,47}$", this);
        }

        /// <summary>The enabled entity with this id, or null.</summary>
        public static NpcSceneEntity Find(string entityId)
        {
            NpcSceneEntity e;
            return entityId != null && Registry.TryGetValue(entityId, out e) ? e : null;
        }

        /// <summary>"Ramen Bowl (1)" → "ramen_bowl_1".</summary>
        public static string IdFromName(string objectName)
        {
            var chars = new System.Text.StringBuilder();
            foreach (char ch in objectName.ToLowerInvariant())
            {
                if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) chars.Append(ch);
                else if (chars.Length > 0 && chars[chars.Length - 1] != '_') chars.Append('_');
            }
            string s = chars.ToString().Trim('_');
            if (s.Length == 0 || !(s[0] >= 'a' && s[0] <= 'z')) s = "e_" + s;
            return s.Length > 48 ? s.Substring(0, 48) : s;
        }

        public SceneEntity ToSceneEntity()
        {
            return new SceneEntity(EntityId, string.IsNullOrEmpty(displayName) ? null : displayName,
                                   string.IsNullOrEmpty(description) ? null : description);
        }
    }
}
