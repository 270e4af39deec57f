// SPDX-License-Identifier: MIT
using UnrealBuildTool;

// The Unreal side of the npc_runtime client: a thin shell over NpcRuntimeCore (protocol, timeline,
// visemes) using UE's WebSockets module, a procedural sound wave and (optionally) the microphone.
public class NpcRuntime : ModuleRules
{
	public NpcRuntime(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine", "NpcRuntimeCore" });
		PrivateDependencyModuleNames.AddRange(new string[] { "WebSockets", "AudioCaptureCore", "AudioMixer" });
	}
}
