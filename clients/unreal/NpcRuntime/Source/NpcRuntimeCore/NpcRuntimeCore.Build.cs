// SPDX-License-Identifier: MIT
using UnrealBuildTool;

// The engine-independent protocol core: plain C++17 (no UE headers outside NpcRuntimeCoreModule.cpp),
// also built and tested outside Unreal with g++ (see CMakeLists.txt / Makefile in this folder).
public class NpcRuntimeCore : ModuleRules
{
	public NpcRuntimeCore(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.NoPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		bEnableExceptions = false;
		PrivateDependencyModuleNames.AddRange(new string[] { "Core" });
		// The g++ test program lives in Tests/ and is not part of the module.
		PrivateIncludePaths.Add(ModuleDirectory + "/Private");
	}
}
