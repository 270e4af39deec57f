// SPDX-License-Identifier: MIT
// A small, strict JSON (RFC 8259) reader and writer with no dependencies, so the protocol assembly compiles
// anywhere (Unity's Mono/IL2CPP, Mono's mcs, .NET) without System.Text.Json or Newtonsoft.
//
// Values map to: null, bool, double (every number), string, List<object> (array), JsonObject (object).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace NpcRuntime.Protocol
{
    /// <summary>Raised for text that is not valid JSON; <see cref="Position"/> is the character index.</summary>
    public sealed class JsonException : FormatException
    {
        public int Position { get; private set; }

        public JsonException(string message, int position)
            : base(message + " at position " + position)
        {
            Position = position;
        }
    }

    /// <summary>Parses JSON text into plain values (see the file header for the mapping).</summary>
    public static class JsonReader
    {
        /// <summary>Deepest nesting accepted (arrays and objects), to keep recursion bounded.</summary>
        public const int MaxDepth = 64;

        /// <summary>Parse one JSON value; the whole text must be that value (whitespace around it allowed).</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            var parser = new Parser(text);
            parser.SkipWhitespace();
            object value = parser.ParseValue(0);
            parser.SkipWhitespace();
            if (!parser.AtEnd) throw parser.Error("unexpected text after the JSON value");
            return value;
        }

        /// <summary>Parse text that must be a JSON object.</summary>
        public static JsonObject ParseObject(string text)
        {
            var obj = Parse(text) as JsonObject;
            if (obj == null) throw new JsonException("expected a JSON object", 0);
            return obj;
        }

        private sealed class Parser
        {
            private readonly string _s;
            private int _i;

            public Parser(string s) { _s = s; }

            public bool AtEnd { get { return _i >= _s.Length; } }

            public JsonException Error(string message) { return new JsonException(message, _i); }

            public void SkipWhitespace()
            {
                while (_i < _s.Length)
                {
                    char c = _s[_i];
                    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
                    _i++;
                }
            }

            public object ParseValue(int depth)
            {
                if (AtEnd) throw Error("unexpected end of input");
                char c = _s[_i];
                switch (c)
                {
                    case '{': return ParseObject(depth + 1);
                    case '[': return ParseArray(depth + 1);
                    case '"': return ParseString();
                    case 't': Expect("true"); return true;
                    case 'f': Expect("false"); return false;
                    case 'n': Expect("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
                        throw Error("unexpected character '" + c + "'");
                }
            }

            private void Expect(string word)
            {
                if (string.CompareOrdinal(_s, _i, word, 0, word.Length) != 0) throw Error("invalid literal");
                _i += word.Length;
            }

            private JsonObject ParseObject(int depth)
            {
                if (depth > MaxDepth) throw Error("nesting deeper than " + MaxDepth);
                _i++; // {
                var obj = new JsonObject();
                SkipWhitespace();
                if (!AtEnd && _s[_i] == '}') { _i++; return obj; }
                while (true)
                {
                    SkipWhitespace();
                    if (AtEnd || _s[_i] != '"') throw Error("expected a string key");
                    string key = ParseString();
                    SkipWhitespace();
                    if (AtEnd || _s[_i] != ':') throw Error("expected ':'");
                    _i++;
                    SkipWhitespace();
                    obj[key] = ParseValue(depth); // a repeated key keeps the last value, as most parsers do
                    SkipWhitespace();
                    if (AtEnd) throw Error("unterminated object");
                    char c = _s[_i++];
                    if (c == '}') return obj;
                    if (c != ',') { _i--; throw Error("expected ',' or '}'"); }
                }
            }

            private List<object> ParseArray(int depth)
            {
                if (depth > MaxDepth) throw Error("nesting deeper than " + MaxDepth);
                _i++; // [
                var list = new List<object>();
                SkipWhitespace();
                if (!AtEnd && _s[_i] == ']') { _i++; return list; }
                while (true)
                {
                    SkipWhitespace();
                    list.Add(ParseValue(depth));
                    SkipWhitespace();
                    if (AtEnd) throw Error("unterminated array");
                    char c = _s[_i++];
                    if (c == ']') return list;
                    if (c != ',') { _i--; throw Error("expected ',' or ']'"); }
                }
            }

            private string ParseString()
            {
                _i++; // opening quote
                StringBuilder sb = null;
                int runStart = _i;
                while (true)
                {
                    if (AtEnd) throw Error("unterminated string");
                    char c = _s[_i];
                    if (c == '"')
                    {
                        string tail = _s.Substring(runStart, _i - runStart);
                        _i++;
                        return sb == null ? tail : sb.Append(tail).ToString();
                    }
                    if (c < 0x20) throw Error("control character in string");
                    if (c != '\\') { _i++; continue; }
                    if (sb == null) sb = new StringBuilder();
                    sb.Append(_s, runStart, _i - runStart);
                    _i++;
                    if (AtEnd) throw Error("unterminated escape");
                    char e = _s[_i++];
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u': sb.Append(ParseHex4()); break; // surrogate pairs arrive as two escapes
                        default: _i--; throw Error("invalid escape '\\" + e + "'");
                    }
                    runStart = _i;
                }
            }

            private char ParseHex4()
            {
                if (_i + 4 > _s.Length) throw Error("truncated \\u escape");
                int v = 0;
                for (int k = 0; k < 4; k++)
                {
                    char h = _s[_i++];
                    int d = h >= '0' && h <= '9' ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) { _i--; throw Error("invalid hex digit in \\u escape"); }
                    v = v * 16 + d;
                }
                return (char)v;
            }

            private object ParseNumber()
            {
                int start = _i;
                if (_s[_i] == '-') _i++;
                if (AtEnd) throw Error("truncated number");
                if (_s[_i] == '0') _i++;
                else if (_s[_i] >= '1' && _s[_i] <= '9') SkipDigits();
                else throw Error("invalid number");
                if (!AtEnd && _s[_i] == '.')
                {
                    _i++;
                    if (AtEnd || !IsDigit(_s[_i])) throw Error("digit expected after '.'");
                    SkipDigits();
                }
                if (!AtEnd && (_s[_i] == 'e' || _s[_i] == 'E'))
                {
                    _i++;
                    if (!AtEnd && (_s[_i] == '+' || _s[_i] == '-')) _i++;
                    if (AtEnd || !IsDigit(_s[_i])) throw Error("digit expected in exponent");
                    SkipDigits();
                }
                double value;
                try
                {
                    value = double.Parse(_s.Substring(start, _i - start), NumberStyles.Float, CultureInfo.InvariantCulture);
                }
                catch (OverflowException) // .NET Framework/Mono; .NET Core returns infinity instead
                {
                    throw new JsonException("number out of range", start);
                }
                if (double.IsInfinity(value)) throw new JsonException("number out of range", start);
                return value;
            }

            private void SkipDigits() { while (!AtEnd && IsDigit(_s[_i])) _i++; }

            private static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
        }
    }

    /// <summary>Writes plain values (and <see cref="IJsonWritable"/> objects) as compact JSON.</summary>
    public static class JsonWriter
    {
        public static string Serialize(object value)
        {
            var sb = new StringBuilder();
            Write(sb, value);
            return sb.ToString();
        }

        public static void Write(StringBuilder sb, object value)
        {
            if (value == null) { sb.Append("null"); return; }
            var s = value as string;
            if (s != null) { WriteString(sb, s); return; }
            if (value is bool) { sb.Append((bool)value ? "true" : "false"); return; }
            if (value is double || value is float || value is int || value is long || value is short
                || value is uint || value is ulong || value is byte || value is decimal)
            {
                WriteNumber(sb, Convert.ToDouble(value, CultureInfo.InvariantCulture));
                return;
            }
            var writable = value as IJsonWritable;
            if (writable != null) { Write(sb, writable.ToJsonValue()); return; }
            var dict = value as IDictionary<string, object>;
            if (dict != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (var kv in dict)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, kv.Key);
                    sb.Append(':');
                    Write(sb, kv.Value);
                }
                sb.Append('}');
                return;
            }
            var list = value as System.Collections.IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (object item in list)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    Write(sb, item);
                }
                sb.Append(']');
                return;
            }
            throw new ArgumentException("cannot write a " + value.GetType().Name + " as JSON");
        }

        public static void WriteNumber(StringBuilder sb, double d)
        {
            if (double.IsNaN(d) || double.IsInfinity(d)) throw new ArgumentException("JSON has no NaN or infinity");
            if (d == Math.Floor(d) && Math.Abs(d) < 1e15) sb.Append(((long)d).ToString(CultureInfo.InvariantCulture));
            else sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
        }

        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029')
                            sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c); // other characters (surrogate pairs included) go out as UTF-8
                        break;
                }
            }
            sb.Append('"');
        }
    }

    /// <summary>Something that turns itself into a plain JSON value (a dictionary, list, string...).</summary>
    public interface IJsonWritable
    {
        object ToJsonValue();
    }
}
