// Packed TFLite Micro model 'model' written by tflite_export (tfq_pareto).
// b-bit weights are stored as b-bit LUT indices decoded at run time by DECODE.
//
// Register these 5 ops (ADD, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MEAN):
//     tflite::MicroMutableOpResolver<5> resolver;
//     resolver.AddAdd();
//     resolver.AddConv2D();
//     resolver.AddDepthwiseConv2D();
//     resolver.AddFullyConnected();
//     resolver.AddMean();
// Tensor arena: at least 244000 bytes (measured on the TFLM interpreter):
//     alignas(16) static uint8_t tensor_arena[model_kArenaSize];
#ifndef MODEL_MODEL_DATA_H_
#define MODEL_MODEL_DATA_H_

constexpr unsigned int model_kArenaSize = 244000;
extern const unsigned char g_model_model_data[];
extern const unsigned int g_model_model_data_len;

#endif  // MODEL_MODEL_DATA_H_
