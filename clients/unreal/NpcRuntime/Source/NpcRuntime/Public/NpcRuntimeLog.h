// SPDX-License-Identifier: MIT
#pragma once

#include "Logging/LogMacros.h"

NPCRUNTIME_API DECLARE_LOG_CATEGORY_EXTERN(LogNpcRuntime, Log, All);
