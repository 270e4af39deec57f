// SPDX-License-Identifier: MIT
// The 15 Oculus/OVR visemes of the protocol and their ARKit blendshape weights (the table of
// clients/visemes/ovr_to_arkit.json, embedded here; a test checks it equals the file), plus a
// smoother that turns the current cue into curve weights for a face rig (ARKit / MetaHuman).
#pragma once

#include "NpcCoreApi.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace npc {

enum class Viseme : std::uint8_t { Sil, PP, FF, TH, DD, kk, CH, SS, nn, RR, aa, E, ih, oh, ou };
constexpr std::size_t kVisemeCount = 15;

/// "sil", "PP", ... (the wire names, case-sensitive).
NPC_CORE_API const char* VisemeName(Viseme viseme);
NPC_CORE_API std::optional<Viseme> VisemeFromName(std::string_view name);

/// One ARKit blendshape ("jawOpen", "mouthFunnel", ...) and its weight in [0, 1].
struct CurveWeight {
  const char* curve;
  float weight;
};

/// The ARKit weights of one viseme (blendshapes not listed are 0).
NPC_CORE_API const std::vector<CurveWeight>& ArkitWeights(Viseme viseme);

/// Every ARKit curve any viseme uses, sorted by name (the curves a rig must have).
NPC_CORE_API const std::vector<std::string>& ArkitCurves();

/// How curve names are spelled for the rig: ARKit's own ("jawOpen", MetaHuman's mh_arkit_mapping_pose
/// and most ARKit-ready rigs) or Live Link Face's ("JawOpen", UE's EARFaceBlendShape names).
enum class CurveNaming : std::uint8_t { Arkit, LiveLink };
NPC_CORE_API std::string CurveName(const char* arkit_name, CurveNaming naming);

/// Smooths the mouth toward the current viseme's weights, frame-rate independent:
/// each curve moves toward its target with time constant attack_ms (rising) or release_ms (falling),
/// so short cues blend instead of popping. Use one per face.
class NPC_CORE_API VisemeSmoother {
 public:
  explicit VisemeSmoother(float attack_ms = 35.0f, float release_ms = 60.0f, float gain = 1.0f);

  /// Advances by dt_ms toward `target` (none: the mouth relaxes to rest). Returns the weights.
  const std::vector<float>& Update(std::optional<Viseme> target, float dt_ms);

  /// Weight of curve i of ArkitCurves(), in [0, 1].
  const std::vector<float>& Weights() const { return weights_; }
  float Weight(std::string_view arkit_curve) const;

  void Reset();

 private:
  float attack_ms_, release_ms_, gain_;
  std::vector<float> weights_;
  std::vector<float> target_;
};

}  // namespace npc
