// SPDX-License-Identifier: MIT
#include "Modules/ModuleManager.h"
#include "NpcRuntimeLog.h"

DEFINE_LOG_CATEGORY(LogNpcRuntime);

IMPLEMENT_MODULE(FDefaultModuleImpl, NpcRuntime)
