// SPDX-License-Identifier: MIT
#include "NpcVisemeComponent.h"

#include "Components/SkeletalMeshComponent.h"
#include "GameFramework/Actor.h"
#include "NpcConversationComponent.h"
#include "NpcVisemes.h"

UNpcVisemeComponent::UNpcVisemeComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
	PrimaryComponentTick.TickGroup = TG_PrePhysics;  // after the conversation has advanced its clock
}

UNpcVisemeComponent::~UNpcVisemeComponent() = default;

void UNpcVisemeComponent::BeginPlay()
{
	Super::BeginPlay();
	if (!Conversation && GetOwner())
	{
		Conversation = GetOwner()->FindComponentByClass<UNpcConversationComponent>();
	}
	if (Conversation)
	{
		AddTickPrerequisiteComponent(Conversation);
	}
	Smoother = std::make_unique<npc::VisemeSmoother>(AttackMs, ReleaseMs, Gain);
	const npc::CurveNaming Naming = CurveNaming == ENpcCurveNaming::LiveLink ? npc::CurveNaming::LiveLink : npc::CurveNaming::Arkit;
	CurveNames.Reset();
	Weights.Reset();
	for (const std::string& Curve : npc::ArkitCurves())
	{
		const FName Name(UTF8_TO_TCHAR(npc::CurveName(Curve.c_str(), Naming).c_str()));
		CurveNames.Add(Name);
		Weights.Add(Name, 0.f);
	}
}

void UNpcVisemeComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (!Smoother) { return; }
	std::optional<npc::Viseme> Target;
	if (Conversation && Conversation->GetCurrentViseme() >= 0)
	{
		Target = static_cast<npc::Viseme>(Conversation->GetCurrentViseme());
	}
	const std::vector<float>& Values = Smoother->Update(Target, DeltaTime * 1000.f);
	for (int32 i = 0; i < CurveNames.Num() && i < static_cast<int32>(Values.size()); ++i)
	{
		Weights.Add(CurveNames[i], Values[i]);
		if (FaceMesh)
		{
			FaceMesh->SetMorphTarget(CurveNames[i], Values[i]);
		}
	}
}
