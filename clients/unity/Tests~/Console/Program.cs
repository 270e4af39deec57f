// SPDX-License-Identifier: MIT
// The Unity client's engine-independent assemblies, checked outside Unity (CI: mcs + mono):
//   mono NpcConsoleTest.exe --visemes clients/visemes [--url ws://127.0.0.1:8765 --scene ramen_shop.json --wav request.wav]
//                           [--token PLAYER_TOKEN] (a server with auth on) [--steps refused] (the handshake must be refused)
//                           [--steps ...,verbs --verbs-prompt TEXT --expect-verbs 'sit seat=stool,...'] (the scene's own verbs)
// Runs the pure unit checks, then (with --url) a live conversation against `npc serve`. Progress goes to stderr; one
// JSON summary line to stdout. Exit code 0 only if every check passed.
// A model's words and actions vary (model, CPU, kernels): the live run checks that every action is valid for the scene,
// and checks exact actions only when told them (--expect-actions, for a server whose replies are scripted).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NpcRuntime.Client;
using NpcRuntime.Protocol;

namespace NpcRuntime.ConsoleTest
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
            Thread.CurrentThread.CurrentCulture = CultureInfo.InvariantCulture;
            Dictionary<string, string> opts;
            try
            {
                opts = ParseArgs(args);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                Console.Error.WriteLine("usage: NpcConsoleTest.exe --visemes DIR [--url WS_URL --scene SCENE.json --wav REQUEST.wav] " +
                                        "[--player ID] [--prompt TEXT] [--seed N] [--steps text,verbs,errors,voice,cancel | refused] [--token PLAYER_TOKEN] " +
                                        "[--expect-actions 'verb object target,...' (the text turn's actions, exactly)] " +
                                        "[--verbs-prompt TEXT] [--expect-verbs 'verb arg=value,...' (the verbs turn's actions, exactly)]");
                return 2;
            }
            var summary = new JsonObject();
            var unit = new Checks();
            try
            {
                UnitChecks.Run(unit, opts["visemes"]);
            }
            catch (Exception e)
            {
                unit.That(false, "unit checks threw " + e);
            }
            summary["unit"] = new JsonObject { { "passed", unit.Passed }, { "failures", unit.Failures } };
            var failures = new List<string>(unit.Failures);
            if (opts.ContainsKey("url"))
            {
                var live = new Checks();
                var report = new JsonObject();
                try
                {
                    new LiveTest(live, report, opts).Run().GetAwaiter().GetResult();
                }
                catch (Exception e)
                {
                    live.That(false, "live run threw " + e.GetType().Name + ": " + e.Message);
                    Console.Error.WriteLine(e);
                }
                report["passed"] = live.Passed;
                report["failures"] = live.Failures;
                summary["live"] = report;
                failures.AddRange(live.Failures);
            }
            summary["ok"] = failures.Count == 0;
            Console.WriteLine(JsonWriter.Serialize(summary));
            return failures.Count == 0 ? 0 : 1;
        }

        private static Dictionary<string, string> ParseArgs(string[] args)
        {
            var opts = new Dictionary<string, string>
            {
                { "player", "unity_console" }, { "prompt", "Please pour me some sake." }, { "steps", "text,errors,voice,cancel" },
            };
            for (int i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--") || i + 1 >= args.Length) throw new ArgumentException("bad argument " + args[i]);
                opts[args[i].Substring(2)] = args[++i];
            }
            if (!opts.ContainsKey("visemes")) throw new ArgumentException("--visemes is required");
            if (opts.ContainsKey("url") && !opts.ContainsKey("scene"))
                throw new ArgumentException("--url needs --scene");
            if (opts.ContainsKey("url") && opts["steps"].Split(',').Contains("voice") && !opts.ContainsKey("wav"))
                throw new ArgumentException("the voice step needs --wav");
            return opts;
        }
    }
}
