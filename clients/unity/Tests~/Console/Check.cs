// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;

namespace NpcRuntime.ConsoleTest
{
    /// <summary>Records named checks; a failed check is kept (with its detail) and the run goes on.</summary>
    public sealed class Checks
    {
        public readonly List<string> Failures = new List<string>();
        public int Passed;

        public bool That(bool condition, string what)
        {
            if (condition) { Passed++; return true; }
            Failures.Add(what);
            Console.Error.WriteLine("FAIL: " + what);
            return false;
        }

        public void Equal<T>(T expected, T actual, string what)
        {
            That(EqualityComparer<T>.Default.Equals(expected, actual), what + ": expected <" + expected + ">, got <" + actual + ">");
        }

        public void Near(double expected, double actual, double tolerance, string what)
        {
            That(Math.Abs(expected - actual) <= tolerance, what + ": expected " + expected + " ± " + tolerance + ", got " + actual);
        }

        /// <summary>The action must throw <typeparamref name="TException"/> whose message contains <paramref name="fragment"/>.</summary>
        public void Throws<TException>(Action action, string fragment, string what) where TException : Exception
        {
            try
            {
                action();
            }
            catch (TException e)
            {
                That(fragment == null || e.Message.Contains(fragment), what + ": message '" + e.Message + "' lacks '" + fragment + "'");
                return;
            }
            catch (Exception e)
            {
                That(false, what + ": threw " + e.GetType().Name + " (" + e.Message + ") instead of " + typeof(TException).Name);
                return;
            }
            That(false, what + ": did not throw " + typeof(TException).Name);
        }
    }
}
