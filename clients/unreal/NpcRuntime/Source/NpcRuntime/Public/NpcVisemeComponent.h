// SPDX-License-Identifier: MIT
// UNpcVisemeComponent: turns the conversation's current viseme into smoothed ARKit curve weights
// (clients/visemes/ovr_to_arkit.json) for a MetaHuman or any ARKit-ready face.
//
// Two ways to use the weights:
//  - AnimBP (MetaHuman): read GetCurveWeights() in the Face AnimBP's event graph and feed them to a
//    "Modify Curve" node (ARKit names: jawOpen, mouthFunnel, ...), before mh_arkit_mapping_pose;
//  - morph targets: set FaceMesh and the weights are written with SetMorphTarget every tick.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"

#include <memory>

#include "NpcVisemeComponent.generated.h"

class UNpcConversationComponent;
class USkeletalMeshComponent;
namespace npc { class VisemeSmoother; }

UENUM(BlueprintType)
enum class ENpcCurveNaming : uint8
{
	/** ARKit's own names (jawOpen): MetaHuman's mh_arkit_mapping_pose, most ARKit-ready rigs. */
	Arkit,
	/** Live Link Face / EARFaceBlendShape style (JawOpen). */
	LiveLink
};

UCLASS(ClassGroup = (AI), meta = (BlueprintSpawnableComponent))
class NPCRUNTIME_API UNpcVisemeComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UNpcVisemeComponent();
	virtual ~UNpcVisemeComponent() override;

	/** The conversation to follow (default: the one on the same actor). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes") TObjectPtr<UNpcConversationComponent> Conversation;
	/** Optional: write the weights to this mesh's morph targets every tick. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes") TObjectPtr<USkeletalMeshComponent> FaceMesh;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes") ENpcCurveNaming CurveNaming = ENpcCurveNaming::Arkit;
	/** Time constant of a curve rising toward a new viseme, ms. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes", meta = (ClampMin = "0")) float AttackMs = 35.f;
	/** Time constant of a curve falling back, ms. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes", meta = (ClampMin = "0")) float ReleaseMs = 60.f;
	/** Scales every weight (0..2): exaggerate or soften articulation. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Visemes", meta = (ClampMin = "0", ClampMax = "2")) float Gain = 1.f;

	/** Curve name -> weight (0..1), updated every tick. */
	UFUNCTION(BlueprintPure, Category = "NPC|Visemes") const TMap<FName, float>& GetCurveWeights() const { return Weights; }

	virtual void BeginPlay() override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	std::unique_ptr<npc::VisemeSmoother> Smoother;
	TArray<FName> CurveNames;  // ArkitCurves(), spelled for CurveNaming
	TMap<FName, float> Weights;
};
