// SPDX-License-Identifier: MIT
#include "NpcVisemes.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace npc {

namespace {

constexpr const char* kNames[kVisemeCount] = {"sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS",
                                              "nn",  "RR", "aa", "E",  "ih", "oh", "ou"};

// clients/visemes/ovr_to_arkit.json, in the order of enum Viseme. Keep in sync with the file:
// the core's test (tests/test_client_unreal.py) compares this table with it.
const std::array<std::vector<CurveWeight>, kVisemeCount>& Table() {
  static const std::array<std::vector<CurveWeight>, kVisemeCount> kTable = {
      /* sil */ std::vector<CurveWeight>{},
      /* PP */ std::vector<CurveWeight>{{"jawOpen", 0.08f}, {"mouthClose", 0.08f}, {"mouthPressLeft", 0.5f}, {"mouthPressRight", 0.5f}, {"mouthRollLower", 0.25f}, {"mouthRollUpper", 0.15f}},
      /* FF */ std::vector<CurveWeight>{{"jawOpen", 0.1f}, {"mouthRollLower", 0.6f}, {"mouthUpperUpLeft", 0.35f}, {"mouthUpperUpRight", 0.35f}, {"mouthPressLeft", 0.1f}, {"mouthPressRight", 0.1f}},
      /* TH */ std::vector<CurveWeight>{{"jawOpen", 0.18f}, {"tongueOut", 0.4f}, {"mouthLowerDownLeft", 0.15f}, {"mouthLowerDownRight", 0.15f}, {"mouthUpperUpLeft", 0.1f}, {"mouthUpperUpRight", 0.1f}},
      /* DD */ std::vector<CurveWeight>{{"jawOpen", 0.2f}, {"mouthLowerDownLeft", 0.2f}, {"mouthLowerDownRight", 0.2f}, {"mouthStretchLeft", 0.15f}, {"mouthStretchRight", 0.15f}, {"mouthUpperUpLeft", 0.1f}, {"mouthUpperUpRight", 0.1f}},
      /* kk */ std::vector<CurveWeight>{{"jawOpen", 0.28f}, {"mouthStretchLeft", 0.2f}, {"mouthStretchRight", 0.2f}, {"mouthLowerDownLeft", 0.15f}, {"mouthLowerDownRight", 0.15f}},
      /* CH */ std::vector<CurveWeight>{{"jawOpen", 0.15f}, {"mouthFunnel", 0.45f}, {"mouthPucker", 0.2f}, {"mouthUpperUpLeft", 0.25f}, {"mouthUpperUpRight", 0.25f}, {"mouthLowerDownLeft", 0.25f}, {"mouthLowerDownRight", 0.25f}},
      /* SS */ std::vector<CurveWeight>{{"jawOpen", 0.08f}, {"mouthStretchLeft", 0.35f}, {"mouthStretchRight", 0.35f}, {"mouthSmileLeft", 0.15f}, {"mouthSmileRight", 0.15f}, {"mouthUpperUpLeft", 0.15f}, {"mouthUpperUpRight", 0.15f}, {"mouthLowerDownLeft", 0.15f}, {"mouthLowerDownRight", 0.15f}},
      /* nn */ std::vector<CurveWeight>{{"jawOpen", 0.15f}, {"mouthStretchLeft", 0.1f}, {"mouthStretchRight", 0.1f}, {"mouthLowerDownLeft", 0.1f}, {"mouthLowerDownRight", 0.1f}},
      /* RR */ std::vector<CurveWeight>{{"jawOpen", 0.15f}, {"mouthPucker", 0.35f}, {"mouthFunnel", 0.25f}, {"mouthRollLower", 0.1f}},
      /* aa */ std::vector<CurveWeight>{{"jawOpen", 0.6f}, {"mouthLowerDownLeft", 0.3f}, {"mouthLowerDownRight", 0.3f}, {"mouthStretchLeft", 0.1f}, {"mouthStretchRight", 0.1f}, {"mouthUpperUpLeft", 0.1f}, {"mouthUpperUpRight", 0.1f}},
      /* E */ std::vector<CurveWeight>{{"jawOpen", 0.35f}, {"mouthStretchLeft", 0.3f}, {"mouthStretchRight", 0.3f}, {"mouthSmileLeft", 0.15f}, {"mouthSmileRight", 0.15f}, {"mouthLowerDownLeft", 0.2f}, {"mouthLowerDownRight", 0.2f}, {"mouthUpperUpLeft", 0.1f}, {"mouthUpperUpRight", 0.1f}},
      /* ih */ std::vector<CurveWeight>{{"jawOpen", 0.2f}, {"mouthSmileLeft", 0.35f}, {"mouthSmileRight", 0.35f}, {"mouthStretchLeft", 0.25f}, {"mouthStretchRight", 0.25f}, {"mouthUpperUpLeft", 0.1f}, {"mouthUpperUpRight", 0.1f}},
      /* oh */ std::vector<CurveWeight>{{"jawOpen", 0.4f}, {"mouthFunnel", 0.5f}, {"mouthPucker", 0.25f}, {"mouthLowerDownLeft", 0.1f}, {"mouthLowerDownRight", 0.1f}},
      /* ou */ std::vector<CurveWeight>{{"jawOpen", 0.15f}, {"mouthPucker", 0.7f}, {"mouthFunnel", 0.4f}},
  };
  return kTable;
}

}  // namespace

const char* VisemeName(Viseme viseme) {
  const auto i = static_cast<std::size_t>(viseme);
  return i < kVisemeCount ? kNames[i] : "sil";
}

std::optional<Viseme> VisemeFromName(std::string_view name) {
  for (std::size_t i = 0; i < kVisemeCount; ++i) {
    if (name == kNames[i]) return static_cast<Viseme>(i);
  }
  return std::nullopt;
}

const std::vector<CurveWeight>& ArkitWeights(Viseme viseme) {
  const auto i = static_cast<std::size_t>(viseme);
  return Table()[i < kVisemeCount ? i : 0];
}

const std::vector<std::string>& ArkitCurves() {
  static const std::vector<std::string> kCurves = [] {
    std::vector<std::string> curves;
    for (const auto& row : Table()) {
      for (const CurveWeight& cw : row) {
        if (std::find(curves.begin(), curves.end(), cw.curve) == curves.end()) curves.emplace_back(cw.curve);
      }
    }
    std::sort(curves.begin(), curves.end());
    return curves;
  }();
  return kCurves;
}

std::string CurveName(const char* arkit_name, CurveNaming naming) {
  std::string name(arkit_name ? arkit_name : "");
  if (naming == CurveNaming::LiveLink && !name.empty() && name[0] >= 'a' && name[0] <= 'z') {
    name[0] = static_cast<char>(name[0] - 'a' + 'A');
  }
  return name;
}

VisemeSmoother::VisemeSmoother(float attack_ms, float release_ms, float gain)
    : attack_ms_(std::max(attack_ms, 0.0f)), release_ms_(std::max(release_ms, 0.0f)), gain_(gain),
      weights_(ArkitCurves().size(), 0.0f), target_(ArkitCurves().size(), 0.0f) {}

void VisemeSmoother::Reset() {
  std::fill(weights_.begin(), weights_.end(), 0.0f);
  std::fill(target_.begin(), target_.end(), 0.0f);
}

const std::vector<float>& VisemeSmoother::Update(std::optional<Viseme> target, float dt_ms) {
  const auto& curves = ArkitCurves();
  std::fill(target_.begin(), target_.end(), 0.0f);
  if (target) {
    for (const CurveWeight& cw : ArkitWeights(*target)) {
      const auto it = std::lower_bound(curves.begin(), curves.end(), cw.curve);
      if (it != curves.end() && *it == cw.curve) {
        target_[static_cast<std::size_t>(it - curves.begin())] = std::clamp(cw.weight * gain_, 0.0f, 1.0f);
      }
    }
  }
  const float dt = std::max(dt_ms, 0.0f);
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    const float tau = target_[i] > weights_[i] ? attack_ms_ : release_ms_;
    const float alpha = tau <= 0.0f ? 1.0f : 1.0f - std::exp(-dt / tau);  // exact for any frame time
    weights_[i] = std::clamp(weights_[i] + (target_[i] - weights_[i]) * alpha, 0.0f, 1.0f);
  }
  return weights_;
}

float VisemeSmoother::Weight(std::string_view arkit_curve) const {
  const auto& curves = ArkitCurves();
  const auto it = std::lower_bound(curves.begin(), curves.end(), arkit_curve,
                                   [](const std::string& a, std::string_view b) { return a < b; });
  return (it != curves.end() && *it == arkit_curve) ? weights_[static_cast<std::size_t>(it - curves.begin())] : 0.0f;
}

}  // namespace npc
