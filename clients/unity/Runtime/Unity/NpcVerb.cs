// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using NpcRuntime.Protocol;
using UnityEngine;

namespace NpcRuntime.Unity
{
    /// <summary>What a verb's argument names: a scene entity of a kind, or one of a closed list of words.</summary>
    public enum NpcVerbArgKind { Object, Location, Character, Any, Values }

    /// <summary>One argument of a declared verb (Inspector-friendly form of <see cref="VerbArgDef"/>).</summary>
    [Serializable]
    public sealed class NpcVerbArg
    {
        [Tooltip("Lowercase words joined by _ (e.g. seat), unique in the verb.")]
        public string name;
        [Tooltip("Object, Location, Character or Any: an id of the scene. Values: one of the words below.")]
        public NpcVerbArgKind kind = NpcVerbArgKind.Object;
        [Tooltip("Kind Values only: the words it may be (lowercase, e.g. wave, bow, shrug).")]
        public List<string> values = new List<string>();

        public VerbArgDef ToVerbArgDef()
        {
            switch (kind)
            {
                case NpcVerbArgKind.Values: return VerbArgDef.OneOf(name, values.ToArray());
                case NpcVerbArgKind.Location: return VerbArgDef.Entity(name, "location");
                case NpcVerbArgKind.Character: return VerbArgDef.Entity(name, "character");
                case NpcVerbArgKind.Any: return VerbArgDef.Entity(name, "any");
                default: return VerbArgDef.Entity(name, "object");
            }
        }
    }

    /// <summary>
    /// A verb of the game declared to the character (Inspector-friendly form of <see cref="VerbDef"/>): e.g.
    /// <c>sit</c> "sits down on a seat" (seat: Object), <c>emote</c> "makes a gesture" (gesture: Values wave, bow, shrug).
    /// <see cref="NpcCharacter"/> sends its <c>verbs</c> in the scene; the character's actions with them come to
    /// <see cref="NpcActionDispatcher.onAction"/> (and its <c>verbHandlers</c>).
    /// </summary>
    [Serializable]
    public sealed class NpcVerb
    {
        [Tooltip("Lowercase words joined by _ (^[a-z][a-z0-9_]{0,31}$); not move, grab or give (built in).")]
        public string name;
        [Tooltip("One line for the model: what the verb does, e.g. 'sits down on a seat' (at most 120 characters).")]
        public string description;
        [Tooltip("Its arguments, in order (at most 4).")]
        public List<NpcVerbArg> args = new List<NpcVerbArg>();

        public VerbDef ToVerbDef()
        {
            var def = new VerbDef { Name = name, Description = description };
            foreach (var a in args) if (a != null) def.Args.Add(a.ToVerbArgDef());
            return def;
        }
    }
}
