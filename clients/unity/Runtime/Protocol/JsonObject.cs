// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using System.Globalization;

namespace NpcRuntime.Protocol
{
    /// <summary>A JSON object: string keys in the order they were added.</summary>
    public sealed class JsonObject : Dictionary<string, object>
    {
        public JsonObject() : base(StringComparer.Ordinal) { }

        /// <summary>Adds <paramref name="value"/> unless it is null (for optional fields); returns this.</summary>
        public JsonObject AddIfNotNull(string key, object value)
        {
            if (value != null) this[key] = value;
            return this;
        }

        public override string ToString() { return JsonWriter.Serialize(this); }
    }

    /// <summary>
    /// Typed, checked access to the fields of a received JSON object. Every failure is a
    /// <see cref="ProtocolException"/> naming the message and the field ("response.audio.samples: missing").
    /// </summary>
    public struct Fields
    {
        private readonly JsonObject _obj;
        private readonly string _path;

        public Fields(JsonObject obj, string path)
        {
            if (obj == null) throw new ArgumentNullException("obj");
            _obj = obj;
            _path = path;
        }

        public JsonObject Object { get { return _obj; } }
        public string Path { get { return _path; } }

        public bool Has(string key) { return _obj.ContainsKey(key); }

        private ProtocolException Bad(string key, string problem)
        {
            return new ProtocolException(_path + "." + key + ": " + problem, _path, key);
        }

        private object Required(string key)
        {
            object v;
            if (!_obj.TryGetValue(key, out v)) throw Bad(key, "missing");
            if (v == null) throw Bad(key, "null where a value is required");
            return v;
        }

        private static string Kind(object v)
        {
            if (v == null) return "null";
            if (v is string) return "a string";
            if (v is double) return "a number";
            if (v is bool) return "a boolean";
            if (v is JsonObject) return "an object";
            return "an array";
        }

        private T As<T>(string key, object v, string expected) where T : class
        {
            var t = v as T;
            if (t == null) throw Bad(key, "expected " + expected + ", got " + Kind(v));
            return t;
        }

        public string String(string key)
        {
            return As<string>(key, Required(key), "a string");
        }

        /// <summary>A string that may be missing or null.</summary>
        public string OptString(string key)
        {
            object v;
            if (!_obj.TryGetValue(key, out v) || v == null) return null;
            return As<string>(key, v, "a string or null");
        }

        public double Number(string key)
        {
            object v = Required(key);
            if (!(v is double)) throw Bad(key, "expected a number, got " + Kind(v));
            return (double)v;
        }

        public double? OptNumber(string key)
        {
            object v;
            if (!_obj.TryGetValue(key, out v) || v == null) return null;
            if (!(v is double)) throw Bad(key, "expected a number or null, got " + Kind(v));
            return (double)v;
        }

        public int Int(string key)
        {
            double d = Number(key);
            if (d != Math.Floor(d) || d < int.MinValue || d > int.MaxValue)
                throw Bad(key, "expected an integer, got " + d.ToString(CultureInfo.InvariantCulture));
            return (int)d;
        }

        public int? OptInt(string key)
        {
            if (OptNumber(key) == null) return null;
            return Int(key);
        }

        public bool Bool(string key)
        {
            object v = Required(key);
            if (!(v is bool)) throw Bad(key, "expected a boolean, got " + Kind(v));
            return (bool)v;
        }

        public bool OptBool(string key, bool fallback)
        {
            object v;
            if (!_obj.TryGetValue(key, out v) || v == null) return fallback;
            if (!(v is bool)) throw Bad(key, "expected a boolean, got " + Kind(v));
            return (bool)v;
        }

        public Fields Obj(string key)
        {
            return new Fields(As<JsonObject>(key, Required(key), "an object"), _path + "." + key);
        }

        /// <summary>An object that may be missing or null (null is returned as <c>null</c>).</summary>
        public Fields? OptObj(string key)
        {
            object v;
            if (!_obj.TryGetValue(key, out v) || v == null) return null;
            return new Fields(As<JsonObject>(key, v, "an object or null"), _path + "." + key);
        }

        public List<object> Array(string key)
        {
            return As<List<object>>(key, Required(key), "an array");
        }

        public List<object> OptArray(string key)
        {
            object v;
            if (!_obj.TryGetValue(key, out v) || v == null) return new List<object>();
            return As<List<object>>(key, v, "an array");
        }

        /// <summary>The elements of an array of objects, each as <see cref="Fields"/>.</summary>
        public List<Fields> ObjArray(string key, bool optional = false)
        {
            var list = optional ? OptArray(key) : Array(key);
            var result = new List<Fields>(list.Count);
            for (int i = 0; i < list.Count; i++)
            {
                var o = list[i] as JsonObject;
                if (o == null) throw Bad(key + "[" + i + "]", "expected an object, got " + Kind(list[i]));
                result.Add(new Fields(o, _path + "." + key + "[" + i + "]"));
            }
            return result;
        }

        public List<string> StringArray(string key, bool optional = false)
        {
            var list = optional ? OptArray(key) : Array(key);
            var result = new List<string>(list.Count);
            for (int i = 0; i < list.Count; i++)
            {
                var s = list[i] as string;
                if (s == null) throw Bad(key + "[" + i + "]", "expected a string, got " + Kind(list[i]));
                result.Add(s);
            }
            return result;
        }

        /// <summary>An object whose values are all numbers (e.g. <c>timings</c>).</summary>
        public Dictionary<string, double> NumberMap(string key, bool optional = false)
        {
            var result = new Dictionary<string, double>(StringComparer.Ordinal);
            Fields? inner = optional ? OptObj(key) : Obj(key);
            if (inner == null) return result;
            foreach (var kv in inner.Value._obj)
            {
                if (!(kv.Value is double)) throw inner.Value.Bad(kv.Key, "expected a number, got " + Kind(kv.Value));
                result[kv.Key] = (double)kv.Value;
            }
            return result;
        }

        /// <summary>A string that must be one of <paramref name="allowed"/>.</summary>
        public string Enum(string key, params string[] allowed)
        {
            string s = String(key);
            if (System.Array.IndexOf(allowed, s) < 0)
                throw Bad(key, "'" + s + "' is not one of " + string.Join(", ", allowed));
            return s;
        }
    }

    /// <summary>A server message that does not follow protocol v1 (bad JSON, a missing or mistyped field,
    /// an audio frame without its announcement...). The connection reports it instead of crashing.</summary>
    public class ProtocolException : Exception
    {
        /// <summary>The message type or path where the problem is (e.g. <c>response.audio</c>); may be null.</summary>
        public string Where { get; private set; }
        /// <summary>The offending field, if any.</summary>
        public string Field { get; private set; }

        public ProtocolException(string message, string where = null, string field = null, Exception inner = null)
            : base(message, inner)
        {
            Where = where;
            Field = field;
        }
    }
}
