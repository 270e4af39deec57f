// SPDX-License-Identifier: MIT
// Verbs as data (docs/protocol.md): the game's own actions, declared in the scene, and the generic action a
// character performs (a verb name and its arguments by name). The built-ins move, grab and give are verbs like any
// other; their typed forms (ActionEvent.Object / Target, NpcActionDispatcher.onMove...) remain for convenience.
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Text;
using System.Text.RegularExpressions;

namespace NpcRuntime.Protocol
{
    /// <summary>One argument of a declared verb: a scene entity of a <see cref="Type"/> (<c>object</c>, <c>location</c>,
    /// <c>character</c> or <c>any</c>), or one of a closed list of <see cref="Values"/> (lowercase words). Exactly one of the two.</summary>
    public sealed class VerbArgDef : IJsonWritable
    {
        /// <summary>The entity kinds an argument may name.</summary>
        public static readonly string[] Types = { "object", "location", "character", "any" };

        /// <summary>Lowercase words joined by <c>_</c> (<c>^[a-z][a-z0-9_]{0,31}$</c>), unique in its verb.</summary>
        public string Name;
        /// <summary><c>object</c>, <c>location</c>, <c>character</c> or <c>any</c>; null when <see cref="Values"/> is set.</summary>
        public string Type;
        /// <summary>The words it may be (1–32, each a verb-style name); null when <see cref="Type"/> is set.</summary>
        public List<string> Values;

        public VerbArgDef() { }

        /// <summary>An argument naming a scene entity of <paramref name="type"/> (object, location, character, any).</summary>
        public static VerbArgDef Entity(string name, string type) { return new VerbArgDef { Name = name, Type = type }; }

        /// <summary>An argument that is one of <paramref name="values"/> (e.g. wave, bow, shrug).</summary>
        public static VerbArgDef OneOf(string name, params string[] values) { return new VerbArgDef { Name = name, Values = new List<string>(values) }; }

        public object ToJsonValue()
        {
            var o = new JsonObject { { "name", Name } };
            if (Values != null) o["values"] = Values;
            else o["type"] = Type;
            return o;
        }
    }

    /// <summary>A verb the scene declares (<c>scene.verbs</c>): the character may perform it as
    /// <c>[name arg1 arg2...]</c>, and it arrives as an <see cref="ActionEvent"/> with that <c>verb</c> and its
    /// <c>args</c> by name. Declare only new verbs: move, grab and give are built in.</summary>
    public sealed class VerbDef : IJsonWritable
    {
        public const int MaxArgs = 4;
        public const int MaxDescription = 120;

        public string Name;
        /// <summary>One line for the model: what the verb does ("sits down on a seat"), 1–120 characters.</summary>
        public string Description;
        /// <summary>Its arguments, in the order the tag names them (at most 4).</summary>
        public List<VerbArgDef> Args = new List<VerbArgDef>();

        public VerbDef() { }

        public VerbDef(string name, string description, params VerbArgDef[] args)
        {
            Name = name;
            Description = description;
            Args = new List<VerbArgDef>(args);
        }

        public object ToJsonValue()
        {
            return new JsonObject { { "name", Name }, { "description", Description }, { "args", Args } };
        }
    }

    /// <summary>The verbs every character knows, and checks of verb names.</summary>
    public static class BuiltInVerbs
    {
        public const string Move = "move";
        public const string Grab = "grab";
        public const string Give = "give";

        private static readonly Regex NamePattern = new Regex("^[a-z][a-z0-9_]{0,31}$");

        /// <summary>Each built-in verb's argument names, in order: move(target), grab(object), give(object, target).</summary>
        public static string[] ArgNames(string verb)
        {
            switch (verb)
            {
                case Move: return new[] { "target" };
                case Grab: return new[] { "object" };
                case Give: return new[] { "object", "target" };
                default: return null;
            }
        }

        public static bool IsBuiltIn(string verb) { return verb == Move || verb == Grab || verb == Give; }

        /// <summary>A valid verb, argument or value name: <c>^[a-z][a-z0-9_]{0,31}$</c>.</summary>
        public static bool IsValidName(string name) { return name != null && NamePattern.IsMatch(name); }
    }

    /// <summary>
    /// An action the character performs: its <see cref="Verb"/> (a built-in or one the scene declared) and every
    /// argument by name (<c>give</c>: <c>{object: cup, target: player}</c>; a declared <c>sit</c>: <c>{seat: stool}</c>).
    /// </summary>
    public sealed class NpcAction
    {
        private static readonly IDictionary<string, string> NoArgs = new Dictionary<string, string>(StringComparer.Ordinal);

        public NpcAction(string verb, IDictionary<string, string> args)
        {
            if (string.IsNullOrEmpty(verb)) throw new ArgumentException("an action needs a verb");
            Verb = verb;
            var copy = new Dictionary<string, string>(StringComparer.Ordinal);
            if (args != null) foreach (var kv in args) copy[kv.Key] = kv.Value;
            Args = new ReadOnlyDictionary<string, string>(copy.Count > 0 ? copy : NoArgs);
        }

        /// <summary>The verb's name (<c>move</c>, <c>grab</c>, <c>give</c> or a declared one such as <c>sit</c>).</summary>
        public string Verb { get; private set; }
        /// <summary>Every argument by name: scene ids, or words of a closed list.</summary>
        public IReadOnlyDictionary<string, string> Args { get; private set; }
        /// <summary>True for move, grab and give.</summary>
        public bool IsBuiltIn { get { return BuiltInVerbs.IsBuiltIn(Verb); } }

        /// <summary>The argument <paramref name="name"/>, or null.</summary>
        public string Arg(string name)
        {
            string value;
            return name != null && Args.TryGetValue(name, out value) ? value : null;
        }

        /// <summary>The argument named <c>object</c> (grab, give), or null.</summary>
        public string Object { get { return Arg("object"); } }
        /// <summary>The argument named <c>target</c> (move, give), or null.</summary>
        public string Target { get { return Arg("target"); } }

        /// <summary><c>sit seat=stool</c>.</summary>
        public override string ToString()
        {
            var sb = new StringBuilder(Verb);
            foreach (var kv in Args) sb.Append(' ').Append(kv.Key).Append('=').Append(kv.Value);
            return sb.ToString();
        }
    }
}
