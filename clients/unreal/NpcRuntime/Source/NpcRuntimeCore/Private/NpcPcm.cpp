// SPDX-License-Identifier: MIT
#include "NpcPcm.h"

#include <algorithm>
#include <cmath>

namespace npc::pcm {

std::vector<std::int16_t> FromBytes(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  std::vector<std::int16_t> out(size / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto u = static_cast<std::uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    out[i] = static_cast<std::int16_t>(u);
  }
  return out;
}

std::vector<std::uint8_t> ToBytes(const std::int16_t* samples, std::size_t count) {
  std::vector<std::uint8_t> out(count * 2);
  for (std::size_t i = 0; i < count; ++i) {
    const auto u = static_cast<std::uint16_t>(samples[i]);
    out[2 * i] = static_cast<std::uint8_t>(u & 0xFF);
    out[2 * i + 1] = static_cast<std::uint8_t>(u >> 8);
  }
  return out;
}

std::vector<std::int16_t> FromFloat(const float* samples, std::size_t frames, int channels) {
  const std::size_t ch = channels > 0 ? static_cast<std::size_t>(channels) : 1;
  std::vector<std::int16_t> out(frames);
  for (std::size_t f = 0; f < frames; ++f) {
    float sum = 0.0f;
    for (std::size_t c = 0; c < ch; ++c) sum += samples[f * ch + c];
    float v = sum / static_cast<float>(ch);
    if (!std::isfinite(v)) v = 0.0f;
    v = std::clamp(v, -1.0f, 1.0f);
    out[f] = static_cast<std::int16_t>(std::lround(v * 32767.0f));
  }
  return out;
}

std::vector<float> ToFloat(const std::int16_t* samples, std::size_t count) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(samples[i]) / 32768.0f;
  return out;
}

std::vector<std::int16_t> Resample(const std::int16_t* samples, std::size_t count, int from_rate, int to_rate) {
  if (from_rate <= 0 || to_rate <= 0 || count == 0) return {};
  if (from_rate == to_rate) return std::vector<std::int16_t>(samples, samples + count);
  const auto out_count = static_cast<std::size_t>(static_cast<double>(count) * to_rate / from_rate);
  std::vector<std::int16_t> out(out_count);
  const double step = static_cast<double>(from_rate) / to_rate;
  for (std::size_t i = 0; i < out_count; ++i) {
    const double pos = static_cast<double>(i) * step;
    const auto i0 = std::min(static_cast<std::size_t>(pos), count - 1);
    const std::size_t i1 = std::min(i0 + 1, count - 1);
    const double frac = pos - static_cast<double>(i0);
    out[i] = static_cast<std::int16_t>(std::lround(samples[i0] * (1.0 - frac) + samples[i1] * frac));
  }
  return out;
}

}  // namespace npc::pcm
