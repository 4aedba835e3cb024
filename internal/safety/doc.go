// Package safety checks prompts with Azure AI Content Safety before they
// are forwarded (issue #19): text analysis of the four harm categories
// against per-category severity thresholds, and Prompt Shields for user
// prompt and document attacks. It extracts the text from chat messages,
// Responses input and completions prompts, calls the service with a key
// or a managed identity token, and turns a block into the 400 content_filter
// refusal Azure OpenAI sends for its own prompt filter. It knows nothing of
// HTTP routing, quotas or the audit trail.
//
// # The service (checked against Microsoft's REST reference)
//
//   - POST {endpoint}/contentsafety/text:analyze?api-version=2024-09-01,
//     body {"text","categories":[...],"outputType":"FourSeverityLevels"},
//     answer {"blocklistsMatch":[],"categoriesAnalysis":[{"category":"Hate","severity":2},...]};
//     severities 0, 2, 4, 6; text up to 10,000 characters per call
//     (https://learn.microsoft.com/rest/api/contentsafety/text-operations/analyze-text?view=rest-contentsafety-2024-09-01,
//     https://learn.microsoft.com/javascript/api/@azure-rest/ai-content-safety/analyzetextoptions).
//   - POST {endpoint}/contentsafety/text:shieldPrompt?api-version=2024-09-01,
//     body {"userPrompt","documents":[...]}, answer
//     {"userPromptAnalysis":{"attackDetected":bool},"documentsAnalysis":[{"attackDetected":bool}]}
//     (https://learn.microsoft.com/azure/ai-services/content-safety/quickstart-jailbreak).
//   - Authentication: the Ocp-Apim-Subscription-Key header, or a Microsoft
//     Entra token for https://cognitiveservices.azure.com/.default (the
//     identity needs Cognitive Services User); both are in the service's
//     OpenAPI security definitions.
//
// # The refusal
//
// Azure OpenAI refuses a filtered prompt with HTTP 400 and
//
//	{"error":{"code":"content_filter","param":"prompt","message":"The response was filtered ...",
//	  "innererror":{"code":"ResponsibleAIPolicyViolation",
//	    "content_filter_result":{"hate":{"filtered":true,"severity":"medium"},"jailbreak":{"filtered":false,"detected":false},...}}}}
//
// (innererror and the singular content_filter_result as live answers
// carry them; /work/shared/reference/azure-functions-and-openai.md notes the
// spec's inner_error spelling). Severities map 0-1 safe, 2-3 low, 4-5 medium,
// 6-7 high. The gateway sends the same shape, so SDK code that handles Azure's
// own filter handles the gateway's.
package safety
