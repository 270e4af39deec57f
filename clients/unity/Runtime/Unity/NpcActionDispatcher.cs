// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using NpcRuntime.Protocol;
using UnityEngine;
using UnityEngine.Events;
using UnityEngine.Serialization;

namespace NpcRuntime.Unity
{
    /// <summary>A UnityEvent with one scene id.</summary>
    [Serializable] public sealed class NpcIdEvent : UnityEvent<string> { }

    /// <summary>A UnityEvent with two scene ids (give: the object, then the character receiving it).</summary>
    [Serializable] public sealed class NpcIdPairEvent : UnityEvent<string, string> { }

    /// <summary>A UnityEvent with the verb, object and target of an action (null when it has none of that name).</summary>
    [Serializable] public sealed class NpcActionIdsEvent : UnityEvent<string, string, string> { }

    /// <summary>A UnityEvent with an action as data: its verb and every argument by name.</summary>
    [Serializable] public sealed class NpcActionEvent : UnityEvent<NpcAction> { }

    /// <summary>Handlers of one verb (a built-in or one the scene declared, e.g. <c>sit</c>).</summary>
    [Serializable]
    public sealed class NpcVerbHandler
    {
        [Tooltip("The verb's name, e.g. sit.")]
        public string verb;
        public NpcActionEvent onPerformed = new NpcActionEvent();
    }

    /// <summary>
    /// Turns the character's actions into UnityEvents at the moment playback reaches their <c>at_ms</c> (actions the
    /// player never heard, after a barge-in, never fire): <see cref="onAction"/> for every action, any verb (the
    /// built-ins and the ones the scene declares, see <see cref="NpcVerb"/>), with its arguments by name;
    /// <see cref="verbHandlers"/> per verb name; and typed events for the built-ins (<see cref="onMove"/>,
    /// <see cref="onGrab"/>, <see cref="onGive"/>). Find the GameObject of an id with <see cref="NpcSceneEntity.Find"/>.
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
        [Tooltip("Every action, any verb: action.Verb and action.Args (every argument by name).")]
        public NpcActionEvent onAction = new NpcActionEvent();
        [Tooltip("Handlers of single verbs (e.g. the scene's own: sit, emote).")]
        public List<NpcVerbHandler> verbHandlers = new List<NpcVerbHandler>();
        [Tooltip("Every action as verb, object (or null), target (or null): the arguments named object and target.")]
        [FormerlySerializedAs("onAction")]
        public NpcActionIdsEvent onActionIds = new NpcActionIdsEvent();

        /// <summary>Perform an action now (called by <see cref="NpcCharacter"/> on the audio clock).</summary>
        public void Perform(ActionEvent action)
        {
            var a = action.Action;
            onAction.Invoke(a);
            onActionIds.Invoke(a.Verb, action.Object, action.Target);
            foreach (var handler in verbHandlers)
                if (handler != null && handler.verb == a.Verb) handler.onPerformed.Invoke(a);
            switch (a.Verb)
            {
                case BuiltInVerbs.Move: onMove.Invoke(action.Target); break;
                case BuiltInVerbs.Grab: onGrab.Invoke(action.Object); break;
                case BuiltInVerbs.Give: onGive.Invoke(action.Object, action.Target); break;
            }
        }
    }
}
