// SPDX-License-Identifier: MIT
// PCM16 helpers: the protocol's audio is 16-bit little-endian mono PCM, both ways.
#pragma once

#include "NpcCoreApi.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace npc::pcm {

/// Little-endian PCM16 bytes to samples (any alignment, any host byte order; an odd last byte is dropped).
NPC_CORE_API std::vector<std::int16_t> FromBytes(const void* data, std::size_t size);

/// Samples to little-endian PCM16 bytes (what a binary microphone frame carries).
NPC_CORE_API std::vector<std::uint8_t> ToBytes(const std::int16_t* samples, std::size_t count);

/// Float samples in [-1, 1] (an engine's capture buffer) to PCM16, clamped; interleaved
/// multi-channel input is averaged down to mono.
NPC_CORE_API std::vector<std::int16_t> FromFloat(const float* samples, std::size_t frames, int channels = 1);

/// PCM16 to float in [-1, 1) (what a procedural sound or a mixer wants).
NPC_CORE_API std::vector<float> ToFloat(const std::int16_t* samples, std::size_t count);

/// Linear-interpolation resampling (e.g. a 48 kHz microphone to the 16 kHz the server prefers).
/// Good enough for speech recognition; not a mastering-grade filter.
NPC_CORE_API std::vector<std::int16_t> Resample(const std::int16_t* samples, std::size_t count, int from_rate, int to_rate);

/// Duration of `samples` at `rate`, in ms (0 for a bad rate).
inline double DurationMs(std::size_t samples, int rate) {
  return rate > 0 ? 1000.0 * static_cast<double>(samples) / rate : 0.0;
}

/// Samples in `ms` at `rate` (rounded down; 0 for a bad rate or negative time).
inline std::size_t SamplesForMs(double ms, int rate) {
  return (rate > 0 && ms > 0.0) ? static_cast<std::size_t>(ms * rate / 1000.0) : 0;
}

}  // namespace npc::pcm
