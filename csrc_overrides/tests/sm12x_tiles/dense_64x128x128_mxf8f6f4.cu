// SM120/SM121 block-scaled *dense* GEMM, MXFP8 x MXFP4, 64x128x128, Pingpong.
#define SM12X_TILE_M 64
#define SM12X_TILE_N 128
#define SM12X_TILE_K 128
#define SM12X_GROUPED 0
#define SM12X_MXF8F4 1
#define SM12X_PINGPONG 1
#include "sm120_bs_tile.cuh"
