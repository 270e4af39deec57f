// SPDX-License-Identifier: MIT
// Registers the core as an Unreal module. Outside Unreal (g++, CMake) this file compiles to nothing:
// UnrealBuildTool defines NPCRUNTIMECORE_API only when it builds this module.
#if defined(NPCRUNTIMECORE_API)
#include "Modules/ModuleManager.h"

IMPLEMENT_MODULE(FDefaultModuleImpl, NpcRuntimeCore)
#endif
