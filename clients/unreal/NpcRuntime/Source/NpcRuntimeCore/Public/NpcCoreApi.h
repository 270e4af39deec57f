// SPDX-License-Identifier: MIT
// Export macro of the npc_runtime protocol core. Inside Unreal, UnrealBuildTool defines
// NPCRUNTIMECORE_API for the NpcRuntimeCore module (dllexport/dllimport in modular builds);
// elsewhere (g++, CMake) it is empty.
#pragma once

#if defined(NPCRUNTIMECORE_API)
#define NPC_CORE_API NPCRUNTIMECORE_API
#else
#define NPC_CORE_API
#endif
