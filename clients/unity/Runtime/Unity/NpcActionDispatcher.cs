// SPDX-License-Identifier: MIT
using System;
using NpcRuntime.Protocol;
using UnityEngine;
using UnityEngine.Events;

namespace NpcRuntime.Unity
{
    /// <summary>A UnityEvent with one scene id.</summary>
    [Serializable] public sealed class NpcIdEvent : UnityEvent<string> { }

    /// <summary>A UnityEvent with two scene ids (give: the object, then the character receiving it).</summary>
    [Serializable] public sealed class NpcIdPairEvent : UnityEvent<string, string> { }

    /// <summary>A UnityEvent with the verb, object and target of any action.</summary>
    [Serializable] public sealed class NpcActionEvent : UnityEvent<string, string, string> { }

    /// <summary>
    /// Turns the character's actions into UnityEvents, one per verb, at the moment playback reaches their
    /// <c>at_ms</c> (actions the player never heard, after a barge-in, never fire). Find the GameObject of an id with
    /// <see cref="NpcSceneEntity.Find"/>.
    /// </summary>
    [AddComponentMenu("NPC Runtime/NPC Action Dispatcher")]
    public sealed class NpcActionDispatcher : MonoBehaviour
    {
        [Tooltip("move <target>: the id of a location, object or character to go to.")]
        public NpcIdEvent onMove = new NpcIdEvent();
        [Tooltip("grab <object>.")]
        public NpcIdEvent onGrab = new NpcIdEvent();
        [Tooltip("give <object> <character>.")]
        public NpcIdPairEvent onGive = new NpcIdPairEvent();
        [Tooltip("Every action: verb, object (or null), target (or null).")]
        public NpcActionEvent onAction = new NpcActionEvent();

        /// <summary>Perform an action now (called by <see cref="NpcCharacter"/> on the audio clock).</summary>
        public void Perform(ActionEvent action)
        {
            onAction.Invoke(action.Verb, action.Object, action.Target);
            switch (action.Verb)
            {
                case "move": onMove.Invoke(action.Target); break;
                case "grab": onGrab.Invoke(action.Object); break;
                case "give": onGive.Invoke(action.Object, action.Target); break;
                default: Debug.LogWarning("NpcActionDispatcher: unknown verb " + action.Verb, this); break;
            }
        }
    }
}
